//! The controller that applies, repairs and deletes generated objects on the cluster.
