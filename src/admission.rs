//! AdmissionReview v1 in, AdmissionReview v1 out. CPU work only: decode, plan, encode.

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use tracing::{debug, info, warn};

use crate::isvc::{self, Isvc};
use crate::patch;
use crate::plan::{self, Input};
use crate::settings::Settings;

/// The body is not an AdmissionReview this server can answer; it gets HTTP 400.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("request body is not an admission.k8s.io/v1 AdmissionReview: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("AdmissionReview has apiVersion '{0}'; only admission.k8s.io/v1 is served")]
    Version(String),
    #[error("AdmissionReview carries no request")]
    NoRequest,
    #[error("cannot encode the response: {0}")]
    Encode(String),
}

/// How a review ended, for metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed without a patch.
    Allowed,
    Patched,
    Denied,
    /// Not an InferenceService CREATE/UPDATE; allowed untouched.
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Patched => "patched",
            Outcome::Denied => "denied",
            Outcome::Skipped => "skipped",
        }
    }
}

/// Answers one AdmissionReview body with the serialized response review.
pub fn review(body: &[u8], settings: &Settings) -> Result<(Vec<u8>, Outcome), AdmissionError> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body)?;
    if review.types.api_version != "admission.k8s.io/v1" || review.types.kind != "AdmissionReview" {
        return Err(AdmissionError::Version(format!(
            "{} (kind {})",
            crate::spec::clip(&review.types.api_version),
            crate::spec::clip(&review.types.kind)
        )));
    }
    let request: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| AdmissionError::NoRequest)?;
    let (response, outcome) = respond(&request, settings);
    let bytes = serde_json::to_vec(&response.into_review())
        .map_err(|e| AdmissionError::Encode(e.to_string()))?;
    Ok((bytes, outcome))
}

/// Decides on one request. Public so the policy and tests can drive it without JSON.
pub fn respond(
    request: &AdmissionRequest<DynamicObject>,
    settings: &Settings,
) -> (AdmissionResponse, Outcome) {
    let response = AdmissionResponse::from(request);
    let is_isvc = request.kind.group == isvc::GROUP && request.kind.kind == isvc::KIND;
    if !is_isvc || !matches!(request.operation, Operation::Create | Operation::Update) {
        // The webhook configuration should never send these; letting them through keeps a
        // misconfigured rule from blocking unrelated writes.
        debug!(kind = %request.kind.kind, op = ?request.operation, "not an InferenceService create/update; allowed");
        return (response, Outcome::Skipped);
    }
    let Some(object) = request.object.as_ref() else {
        return deny(response, "the request carries no object".into(), request);
    };
    let namespace = request.namespace.as_deref().unwrap_or("default");
    let new = match Isvc::from_parts(&object.metadata, &object.data, namespace) {
        Ok(v) => v,
        Err(e) => return deny(response, e.to_string(), request),
    };
    let old = match (&request.operation, request.old_object.as_ref()) {
        (Operation::Update, Some(o)) => match Isvc::from_parts(&o.metadata, &o.data, namespace) {
            Ok(v) => Some(v),
            Err(e) => return deny(response, format!("stored object: {e}"), request),
        },
        _ => None,
    };
    let input = Input {
        isvc: &new,
        old: old.as_ref(),
        live_deployment: None,
    };
    match plan::plan(input, settings) {
        Err(e) => deny(response, e.to_string(), request),
        Ok(p) => {
            let warnings = (!p.warnings.is_empty()).then(|| p.warnings.clone());
            let ops = patch::annotations(object.metadata.annotations.as_ref(), &p.annotations);
            let outcome = if ops.0.is_empty() {
                Outcome::Allowed
            } else {
                Outcome::Patched
            };
            let mut response = if ops.0.is_empty() {
                response
            } else {
                match response.with_patch(ops) {
                    Ok(r) => r,
                    // Serializing a patch of strings cannot fail in practice; if it ever did,
                    // refusing is safer than admitting an unconfigured object.
                    Err(e) => {
                        let r = AdmissionResponse::from(request);
                        return deny(
                            r,
                            format!("internal error encoding the patch: {e}"),
                            request,
                        );
                    }
                }
            };
            info!(
                isvc = %new.name, namespace = %new.namespace, op = ?request.operation,
                dry_run = request.dry_run, outcome = outcome.as_str(),
                warnings = p.warnings.len(), "admitted"
            );
            response.warnings = warnings;
            (response, outcome)
        }
    }
}

fn deny(
    response: AdmissionResponse,
    message: String,
    request: &AdmissionRequest<DynamicObject>,
) -> (AdmissionResponse, Outcome) {
    warn!(
        name = %request.name, namespace = ?request.namespace, op = ?request.operation,
        dry_run = request.dry_run, reason = %message, "denied"
    );
    let mut response = response.deny(message);
    // 422 like the API server's own validation errors; kubectl prints the message as is.
    response.result.code = 422;
    response.result.reason = "Invalid".into();
    (response, Outcome::Denied)
}
