//! Text helpers every layer uses: clipping user values for messages, and durations.

pub mod duration;
