//! AdmissionReview v1 in, AdmissionReview v1 out. CPU work only: decode, plan, encode.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tracing::{debug, info, warn};

use crate::core::isvc::{self, Isvc, SpecFields, StatusFields};
use crate::core::patch;
use crate::core::plan::Input;
use crate::policy::Requester;
use crate::scaling::Scaling;

/// The body is not an AdmissionReview this server can answer; it gets HTTP 400.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("request body is not an admission.k8s.io/v1 AdmissionReview: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("AdmissionReview has apiVersion '{0}'; only admission.k8s.io/v1 is served")]
    Version(String),
    #[error("the body has kind '{0}'; only AdmissionReview is served")]
    Kind(String),
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

/// The response half of an AdmissionReview v1. Written here rather than taken from kube,
/// whose response serialises the patch as a list of numbers instead of the base64 string
/// the API documents.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Base64 of the RFC 6902 patch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Status {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseReview<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: &'a Response,
}

impl Response {
    fn allow(uid: &str) -> Response {
        Response {
            uid: uid.to_string(),
            allowed: true,
            ..Response::default()
        }
    }

    /// Serialises the whole AdmissionReview around this response.
    pub fn to_review_json(&self) -> Result<Vec<u8>, AdmissionError> {
        // Sized up front: growing the buffer as it fills was a third of encoding's cost.
        let text = |s: &str| s.len() + s.len() / 8;
        let guess = 192
            + self.uid.len()
            + self.patch.as_deref().map_or(0, str::len)
            + self.status.as_ref().map_or(0, |s| text(&s.message))
            + self.warnings.iter().map(|w| text(w) + 3).sum::<usize>();
        let mut out = Vec::with_capacity(guess);
        serde_json::to_writer(
            &mut out,
            &ResponseReview {
                api_version: "admission.k8s.io/v1",
                kind: "AdmissionReview",
                response: self,
            },
        )
        .map_err(|e| AdmissionError::Encode(e.to_string()))?;
        Ok(out)
    }
}

/// The parts of an AdmissionReview request this webhook reads. Everything else (managed
/// fields, the rest of the spec, options) is skipped while parsing instead of being built
/// into a tree first, which is most of the cost of a review.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn<O> {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    request: Option<Request<O>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<O> {
    pub uid: String,
    pub kind: RequestKind,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    #[serde(default)]
    pub user_info: UserInfo,
    #[serde(default = "none")]
    pub object: Option<O>,
    #[serde(default = "none")]
    pub old_object: Option<O>,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Deserialize)]
pub struct RequestKind {
    #[serde(default)]
    pub group: String,
    pub kind: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

#[derive(Debug, Default, Deserialize)]
pub struct UserInfo {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub groups: Option<Vec<String>>,
}

/// `Option`'s default without asking the object type for one.
fn none<O>() -> Option<O> {
    None
}

/// An InferenceService as the planner sees it, with `spec` and `status` in one of two forms.
/// Mutating webhooks run before schema validation, so a malformed spec must reach the
/// planner's own field checks rather than fail decoding:
/// - [`Decoded`]: the spec's fields the planner reads, typed, in the request's own pass
///   (every well-formed request);
/// - [`Textual`]: spec and status kept as JSON text, for a request the types do not fit.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Object<S, T> {
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: Meta,
    #[serde(default = "none")]
    pub spec: Option<S>,
    #[serde(default = "none")]
    pub status: Option<T>,
}

pub type Decoded<'a> = Object<SpecFields<'a>, StatusFields>;
pub type Textual<'a> = Object<&'a RawValue, &'a RawValue>;

/// How the planner's view is made from either form of [`Object`].
pub trait View {
    /// The planner's view; takes the metadata, which the view keeps.
    fn view(&mut self, fallback_namespace: &str) -> Result<Isvc, isvc::FieldError>;
}

#[derive(Debug, Default, Deserialize)]
pub struct Meta {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl<S, T> Object<S, T> {
    /// Why the object is not an InferenceService although the request says so, if it is not.
    /// An object that names no kind is taken as the request's.
    fn kind_mismatch(&self) -> Option<String> {
        let group = self
            .api_version
            .as_deref()
            .map(|v| v.split_once('/').map_or("", |(g, _)| g));
        let kind = self.kind.as_deref();
        let ok = group.is_none_or(|g| g == isvc::GROUP) && kind.is_none_or(|k| k == isvc::KIND);
        (!ok).then(|| {
            format!(
                "the request is for an {} but its object is apiVersion '{}', kind '{}'; refusing to change it",
                isvc::KIND,
                crate::core::text::clip(self.api_version.as_deref().unwrap_or_default()),
                crate::core::text::clip(kind.unwrap_or_default())
            )
        })
    }
}

impl View for Decoded<'_> {
    fn view(&mut self, fallback_namespace: &str) -> Result<Isvc, isvc::FieldError> {
        Isvc::from_decoded(
            self.metadata.name.take(),
            self.metadata.namespace.take(),
            self.metadata.annotations.take(),
            self.spec.take(),
            self.status.take(),
            fallback_namespace,
        )
    }
}

impl View for Textual<'_> {
    fn view(&mut self, fallback_namespace: &str) -> Result<Isvc, isvc::FieldError> {
        Isvc::from_text(
            self.metadata.name.take(),
            self.metadata.namespace.take(),
            self.metadata.annotations.take(),
            self.spec.map(RawValue::get),
            self.status.map(RawValue::get),
            fallback_namespace,
        )
    }
}

/// Policy findings let through by one review, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    pub warned: usize,
    pub audited: usize,
}

/// Answers one AdmissionReview body with the serialized response review.
pub fn review(
    body: &[u8],
    scaling: &Scaling,
) -> Result<(Vec<u8>, Outcome, Findings), AdmissionError> {
    // Checking the UTF-8 of the whole body once is cheaper than serde_json checking each
    // string it reads; a body that is not UTF-8 is read from bytes for serde_json's message,
    // which says where.
    let Ok(text) = std::str::from_utf8(body) else {
        return answer_review(serde_json::from_slice::<ReviewIn<Textual>>(body)?, scaling);
    };
    // One pass for every well-formed request. One the spec's types do not fit is read again
    // with the spec as text, for the planner's field checks (and a body that is not JSON,
    // for serde_json's message).
    match serde_json::from_str::<ReviewIn<Decoded>>(text) {
        Ok(review) => answer_review(review, scaling),
        Err(_) => answer_review(serde_json::from_str::<ReviewIn<Textual>>(text)?, scaling),
    }
}

fn answer_review<S, T>(
    review: ReviewIn<Object<S, T>>,
    scaling: &Scaling,
) -> Result<(Vec<u8>, Outcome, Findings), AdmissionError>
where
    Object<S, T>: View,
{
    if review.kind != "AdmissionReview" {
        return Err(AdmissionError::Kind(crate::core::text::clip(&review.kind)));
    }
    if review.api_version != "admission.k8s.io/v1" {
        return Err(AdmissionError::Version(crate::core::text::clip(
            &review.api_version,
        )));
    }
    let request = review.request.ok_or(AdmissionError::NoRequest)?;
    let (response, outcome, findings) = respond(request, scaling);
    Ok((response.to_review_json()?, outcome, findings))
}

/// Decides on one request. Public so the policy and tests can drive it without JSON.
pub fn respond<S, T>(
    request: Request<Object<S, T>>,
    scaling: &Scaling,
) -> (Response, Outcome, Findings)
where
    Object<S, T>: View,
{
    let mut findings = Findings::default();
    let (response, outcome) = answer(request, scaling, &mut findings);
    (response, outcome, findings)
}

fn answer<S, T>(
    mut owned: Request<Object<S, T>>,
    scaling: &Scaling,
    findings: &mut Findings,
) -> (Response, Outcome)
where
    Object<S, T>: View,
{
    // The objects are taken so their metadata can move into the planner's view.
    let (object, mut old_object) = (owned.object.take(), owned.old_object.take());
    let request = &owned;
    let response = Response::allow(&request.uid);
    let is_isvc = request.kind.group == isvc::GROUP && request.kind.kind == isvc::KIND;
    if !is_isvc || !matches!(request.operation, Operation::Create | Operation::Update) {
        // The webhook configuration should never send these; letting them through keeps a
        // misconfigured rule from blocking unrelated writes.
        debug!(kind = %request.kind.kind, op = ?request.operation, "not an InferenceService create/update; allowed");
        return (response, Outcome::Skipped);
    }
    let Some(mut object) = object else {
        return deny(response, "the request carries no object".into(), request);
    };
    if let Some(problem) = object.kind_mismatch() {
        return deny(response, problem, request);
    }
    // The API server always sends the stored object with an UPDATE. Without it the update
    // cannot be told from a create, and judging it as one would let it change what KServe
    // fixes at creation (the deployment mode).
    if request.operation == Operation::Update && old_object.is_none() {
        return deny(
            response,
            "the UPDATE request carries no oldObject (the stored InferenceService), so it cannot be checked against what KServe fixed at creation; the API server always sends it, so this request did not come from one".into(),
            request,
        );
    }
    let namespace = request.namespace.as_deref().unwrap_or("default");
    let had_annotations = object.metadata.annotations.is_some();
    let new = match object.view(namespace) {
        Ok(v) => v,
        Err(e) => return deny(response, e.to_string(), request),
    };
    let old = match (&request.operation, old_object.as_mut()) {
        (Operation::Update, Some(o)) => match o.view(namespace) {
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
    let groups = request.user_info.groups.clone().unwrap_or_default();
    let requester = Requester {
        username: request.user_info.username.as_deref().unwrap_or_default(),
        groups: &groups,
    };
    match scaling.admit(input, requester) {
        Err(e) => deny(response, e.to_string(), request),
        Ok(p) => {
            for finding in &p.audit {
                info!(isvc = %new.name, namespace = %new.namespace, finding = %finding, "policy audit");
            }
            findings.audited = p.audit.len();
            findings.warned = p
                .warnings
                .iter()
                .filter(|w| w.starts_with(crate::policy::WARN_PREFIX))
                .count();
            let mut response = response;
            let outcome = match patch::annotations_json(
                had_annotations.then_some(&new.annotations),
                &p.annotations,
            ) {
                Ok(None) => Outcome::Allowed,
                Ok(Some(bytes)) => {
                    response.patch = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
                    response.patch_type = Some("JSONPatch");
                    Outcome::Patched
                }
                // A patch of strings always serialises; if it ever did not, refusing is safer
                // than admitting an object left in Knative mode.
                Err(e) => {
                    return deny(
                        response,
                        format!("internal error encoding the patch: {e}"),
                        request,
                    );
                }
            };
            info!(
                isvc = %new.name, namespace = %new.namespace, op = ?request.operation,
                uid = %who(&request.uid), user = %who(request.user_info.username.as_deref().unwrap_or_default()),
                dry_run = request.dry_run, outcome = outcome.as_str(),
                warnings = p.warnings.len(), "admitted"
            );
            response.warnings = p.warnings.iter().map(|w| shown_warning(w)).collect();
            (response, outcome)
        }
    }
}

/// The API server cuts a warning to this many characters and drops one that contains a
/// control character.
pub const MAX_WARNING: usize = 256;

/// A warning as the API server will show it whole: control characters escaped, and cut
/// (ending in `...`) to [`MAX_WARNING`] characters. Every warning leaves through here.
pub fn shown_warning(w: &str) -> String {
    let escaped = crate::core::text::clip_to(w, usize::MAX);
    if escaped.chars().count() <= MAX_WARNING {
        return escaped;
    }
    // `clip_to` adds `...` after the cut; escaping again cannot grow an escaped string.
    crate::core::text::clip_to(&escaped, MAX_WARNING - 3)
}

/// A request uid or user name as logged: control characters escaped so a crafted name cannot
/// forge log lines, and cut at a length no real name reaches. Real names need neither and are
/// logged as they are, without a copy.
fn who(s: &str) -> std::borrow::Cow<'_, str> {
    const MAX: usize = 256;
    // At most MAX bytes is at most MAX characters, so `clip_to` would not cut it either.
    if s.len() <= MAX && !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(crate::core::text::clip_to(s, MAX))
}

fn deny<O>(response: Response, message: String, request: &Request<O>) -> (Response, Outcome) {
    warn!(
        name = %request.name, namespace = ?request.namespace, op = ?request.operation,
        uid = %who(&request.uid),
        user = %who(request.user_info.username.as_deref().unwrap_or_default()),
        dry_run = request.dry_run, reason = %message, "denied"
    );
    // 422 like the API server's own validation errors; kubectl prints the message as is.
    let response = Response {
        allowed: false,
        status: Some(Status {
            code: 422,
            reason: "Invalid",
            message,
        }),
        patch: None,
        patch_type: None,
        warnings: Vec::new(),
        ..response
    };
    (response, Outcome::Denied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::settings::Settings;
    use serde_json::{Value, json};

    fn review_of(operation: &str, object: Value, old: Value) -> String {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u-1", "kind": {"group": "serving.kserve.io", "version": "v1beta1", "kind": "InferenceService"},
            "name": "m", "namespace": "llm", "operation": operation,
            "userInfo": {"username": "alice", "groups": ["dev"]},
            "object": object, "oldObject": old, "dryRun": false}})
        .to_string()
    }

    fn isvc(annotations: Value, predictor: Value, status: Value) -> Value {
        json!({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
               "metadata": {"name": "m", "annotations": annotations},
               "spec": {"predictor": predictor, "transformer": {"containers": [{"name": "t"}]}},
               "status": status})
    }

    /// A well-formed request is read in one pass with the spec typed; the answer must be the
    /// one the spec-as-text reading gives, byte for byte.
    #[test]
    fn both_readings_of_a_request_answer_alike() {
        let scaling = Scaling::from(Settings::default());
        let model = json!({"minReplicas": 1, "maxReplicas": 3, "model": {
            "modelFormat": {"name": "huggingface"}, "args": ["--max-model-len=4096"],
            "env": [{"name": "A", "value": "1"}],
            "resources": {"limits": {"nvidia.com/gpu": "1"}}}});
        let sglang = json!({"minReplicas": 0, "containers": [
            {"name": "kserve-container", "command": ["python", "-m", "sglang.launch_server"],
             "resources": {"requests": {"amd.com/gpu": 1}}},
            {"name": "agent", "args": ["--x"]}], "scaleMetric": "concurrency",
            "annotations": {"autoscaling.knative.dev/target": "5"}});
        let annotated =
            json!({"scaling.io/strategy": "tokens,queue", "scaling.io/max-replicas": "8"});
        let raw = json!({"serving.kserve.io/deploymentMode": "RawDeployment",
                         "scaling.io/strategy": "queue"});
        let cases = [
            review_of(
                "CREATE",
                isvc(annotated.clone(), model.clone(), Value::Null),
                Value::Null,
            ),
            review_of(
                "CREATE",
                isvc(json!({"team": "a"}), model.clone(), Value::Null),
                Value::Null,
            ),
            review_of(
                "CREATE",
                isvc(Value::Null, model.clone(), Value::Null),
                Value::Null,
            ),
            review_of(
                "CREATE",
                isvc(raw.clone(), sglang.clone(), Value::Null),
                Value::Null,
            ),
            review_of(
                "CREATE",
                isvc(
                    json!({"scaling.io/strategy": "nonsense"}),
                    model.clone(),
                    Value::Null,
                ),
                Value::Null,
            ),
            review_of(
                "UPDATE",
                isvc(
                    raw.clone(),
                    sglang.clone(),
                    json!({"deploymentMode": "RawDeployment"}),
                ),
                isvc(
                    raw,
                    model,
                    json!({"deploymentMode": "RawDeployment", "url": "http://m"}),
                ),
            ),
        ];
        // The stored object's mode comes from its status: KServe fixed Serverless at creation.
        let serverless = json!({"deploymentMode": "Serverless"});
        let cases = cases.into_iter().chain([review_of(
            "UPDATE",
            isvc(
                json!({"scaling.io/strategy": "queue"}),
                sglang.clone(),
                serverless.clone(),
            ),
            isvc(json!({"team": "a"}), sglang, serverless),
        )]);
        for text in cases {
            let one_pass = serde_json::from_str::<ReviewIn<Decoded>>(&text)
                .unwrap_or_else(|e| panic!("{e}: {text}"));
            let as_text = serde_json::from_str::<ReviewIn<Textual>>(&text).unwrap();
            let (a, b) = (
                answer_review(one_pass, &scaling).unwrap(),
                answer_review(as_text, &scaling).unwrap(),
            );
            assert_eq!(a.0, b.0, "{text}");
            assert_eq!((a.1, a.2), (b.1, b.2), "{text}");
        }
    }

    /// Depth beyond serde_json's 128 levels (valid JSON) in a field the planner does not read
    /// is skipped like the rest of that field; in one it reads, the review is denied naming
    /// the spec rather than refused as an undecodable body.
    #[test]
    fn depth_matters_only_in_fields_the_planner_reads() {
        let scaling = Scaling::from(Settings::default());
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        for (predictor, outcome) in [
            (json!({"model": {"env": "DEEP"}}), Outcome::Patched),
            (json!({"model": {"args": "DEEP"}}), Outcome::Denied),
        ] {
            let annotations = json!({"scaling.io/strategy": "queue"});
            let text = review_of(
                "CREATE",
                isvc(annotations, predictor, Value::Null),
                Value::Null,
            )
            .replace("\"DEEP\"", &deep);
            let (body, got, _) = review(text.as_bytes(), &scaling).unwrap();
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(got, outcome, "{v}");
            if outcome == Outcome::Denied {
                let message = v["response"]["status"]["message"].as_str().unwrap();
                assert!(
                    message.starts_with("spec: cannot be read: recursion limit"),
                    "{message}"
                );
            }
        }
    }

    /// Input the types do not fit leaves the one-pass reading, and the answer names the field.
    #[test]
    fn a_spec_the_types_do_not_fit_is_read_as_text() {
        let scaling = Scaling::from(Settings::default());
        let annotated = json!({"scaling.io/strategy": "queue"});
        for (predictor, field) in [
            (json!({"minReplicas": "2"}), "spec.predictor.minReplicas"),
            (
                json!({"maxReplicas": 2147483648u64}),
                "spec.predictor.maxReplicas",
            ),
            (
                json!({"model": {"args": [1]}}),
                "spec.predictor.model.args[0]",
            ),
        ] {
            let text = review_of(
                "CREATE",
                isvc(annotated.clone(), predictor, Value::Null),
                Value::Null,
            );
            assert!(
                serde_json::from_str::<ReviewIn<Decoded>>(&text).is_err(),
                "{text}"
            );
            let (body, outcome, _) = review(text.as_bytes(), &scaling).unwrap();
            assert_eq!(outcome, Outcome::Denied);
            let v: Value = serde_json::from_slice(&body).unwrap();
            let message = v["response"]["status"]["message"].as_str().unwrap();
            assert!(message.starts_with(field), "{message}");
        }
    }

    #[test]
    fn logged_names_are_escaped_and_cut_like_clip_to() {
        for s in [
            "system:serviceaccount:ci:deployer".to_string(),
            "evil\n{\"forged\":1}".to_string(),
            "é".repeat(200),
            "a".repeat(256),
            "a".repeat(300),
            "tab\there".to_string(),
            String::new(),
        ] {
            assert_eq!(who(&s), crate::core::text::clip_to(&s, 256), "{s}");
        }
        assert!(matches!(who("alice"), std::borrow::Cow::Borrowed("alice")));
    }

    #[test]
    fn warnings_fit_what_the_api_server_shows() {
        let long = format!("{}\n{}", "a".repeat(10), "é".repeat(300));
        let w = shown_warning(&long);
        assert_eq!(w.chars().count(), MAX_WARNING);
        assert!(w.ends_with("...") && !w.contains('\n'), "{w}");
        assert!(w.contains("\\n"), "{w}");
        assert_eq!(shown_warning("short"), "short");
        let exact = "b".repeat(MAX_WARNING);
        assert_eq!(shown_warning(&exact), exact);
    }
}
