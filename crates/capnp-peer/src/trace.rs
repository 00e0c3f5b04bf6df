//! A one-line description of a framed RPC message, read with capnp-rpc's own generated
//! `rpc_capnp`, for traces and tests.

use std::fmt::Write;

use capnp::Error;
use capnp_rpc::rpc_capnp::{cap_descriptor, message, message_target, payload, promised_answer};

use crate::network::parse_message;

/// Describes one framed message, e.g. `Call(q=1 target=import(0) method=0 caps=[none])`.
/// Malformed input gives an error, never a panic.
pub fn describe_message(bytes: &[u8]) -> Result<String, Error> {
    let reader = parse_message(bytes)?;
    let root: message::Reader = reader.get_root()?;
    describe(root)
}

/// The name of the message's union variant (`"Call"`, `"Return"`, ...).
pub fn message_kind(bytes: &[u8]) -> Result<&'static str, Error> {
    let reader = parse_message(bytes)?;
    let root: message::Reader = reader.get_root()?;
    Ok(match root.which()? {
        message::Unimplemented(_) => "Unimplemented",
        message::Abort(_) => "Abort",
        message::Call(_) => "Call",
        message::Return(_) => "Return",
        message::Finish(_) => "Finish",
        message::Resolve(_) => "Resolve",
        message::Release(_) => "Release",
        message::ObsoleteSave(_) => "ObsoleteSave",
        message::Bootstrap(_) => "Bootstrap",
        message::ObsoleteDelete(_) => "ObsoleteDelete",
        message::Provide(_) => "Provide",
        message::Accept(_) => "Accept",
        message::Join(_) => "Join",
        message::Disembargo(_) => "Disembargo",
    })
}

fn target(t: message_target::Reader) -> Result<String, Error> {
    Ok(match t.which()? {
        message_target::ImportedCap(id) => format!("import({id})"),
        message_target::PromisedAnswer(p) => promised(p?)?,
    })
}

fn promised(p: promised_answer::Reader) -> Result<String, Error> {
    let mut s = format!("answer({}", p.get_question_id());
    for op in p.get_transform()?.iter() {
        match op.which()? {
            promised_answer::op::Noop(()) => s.push_str(".noop"),
            promised_answer::op::GetPointerField(i) => {
                let _ = write!(s, ".{i}");
            }
        }
    }
    s.push(')');
    Ok(s)
}

fn caps(p: payload::Reader) -> Result<String, Error> {
    let mut parts = Vec::new();
    for d in p.get_cap_table()?.iter() {
        parts.push(match d.which()? {
            cap_descriptor::None(()) => "none".to_string(),
            cap_descriptor::SenderHosted(id) => format!("senderHosted({id})"),
            cap_descriptor::SenderPromise(id) => format!("senderPromise({id})"),
            cap_descriptor::ReceiverHosted(id) => format!("receiverHosted({id})"),
            cap_descriptor::ReceiverAnswer(p) => format!("receiverAnswer:{}", promised(p?)?),
            cap_descriptor::ThirdPartyHosted(_) => "thirdPartyHosted".to_string(),
        });
    }
    Ok(format!("[{}]", parts.join(",")))
}

fn reason(e: capnp_rpc::rpc_capnp::exception::Reader) -> String {
    let text = e
        .get_reason()
        .ok()
        .and_then(|r| r.to_str().ok().map(str::to_string))
        .unwrap_or_else(|| "<unreadable>".to_string());
    let kind = match e.get_type() {
        Ok(t) => format!("{t:?}"),
        Err(_) => "?".to_string(),
    };
    format!("{kind} {text:?}")
}

fn describe(root: message::Reader) -> Result<String, Error> {
    use capnp_rpc::rpc_capnp::{disembargo, resolve, return_};
    Ok(match root.which()? {
        message::Unimplemented(m) => {
            let inner = describe(m?).unwrap_or_else(|e| format!("<{e}>"));
            format!("Unimplemented({inner})")
        }
        message::Abort(e) => format!("Abort({})", reason(e?)),
        message::Bootstrap(b) => format!("Bootstrap(q={})", b?.get_question_id()),
        message::Call(c) => {
            let c = c?;
            format!(
                "Call(q={} target={} iface={:#x} method={} caps={})",
                c.get_question_id(),
                target(c.get_target()?)?,
                c.get_interface_id(),
                c.get_method_id(),
                caps(c.get_params()?)?
            )
        }
        message::Return(r) => {
            let r = r?;
            let body = match r.which()? {
                return_::Results(p) => format!("results caps={}", caps(p?)?),
                return_::Exception(e) => format!("exception {}", reason(e?)),
                return_::Canceled(()) => "canceled".to_string(),
                return_::ResultsSentElsewhere(()) => "resultsSentElsewhere".to_string(),
                return_::TakeFromOtherQuestion(q) => format!("takeFromOtherQuestion({q})"),
                return_::AcceptFromThirdParty(_) => "acceptFromThirdParty".to_string(),
            };
            format!(
                "Return(a={} {body} releaseParamCaps={})",
                r.get_answer_id(),
                r.get_release_param_caps()
            )
        }
        message::Finish(f) => {
            let f = f?;
            format!(
                "Finish(q={} releaseResultCaps={})",
                f.get_question_id(),
                f.get_release_result_caps()
            )
        }
        message::Resolve(r) => {
            let r = r?;
            let body = match r.which()? {
                resolve::Cap(d) => {
                    let d = d?;
                    match d.which()? {
                        cap_descriptor::None(()) => "none".to_string(),
                        cap_descriptor::SenderHosted(id) => format!("senderHosted({id})"),
                        cap_descriptor::SenderPromise(id) => format!("senderPromise({id})"),
                        cap_descriptor::ReceiverHosted(id) => format!("receiverHosted({id})"),
                        cap_descriptor::ReceiverAnswer(p) => {
                            format!("receiverAnswer:{}", promised(p?)?)
                        }
                        cap_descriptor::ThirdPartyHosted(_) => "thirdPartyHosted".to_string(),
                    }
                }
                resolve::Exception(e) => format!("exception {}", reason(e?)),
            };
            format!("Resolve(promise={} {body})", r.get_promise_id())
        }
        message::Release(r) => {
            let r = r?;
            format!(
                "Release(id={} count={})",
                r.get_id(),
                r.get_reference_count()
            )
        }
        message::Disembargo(d) => {
            let d = d?;
            let ctx = match d.get_context().which()? {
                disembargo::context::SenderLoopback(id) => format!("senderLoopback({id})"),
                disembargo::context::ReceiverLoopback(id) => format!("receiverLoopback({id})"),
                disembargo::context::Accept(()) => "accept".to_string(),
                disembargo::context::Provide(id) => format!("provide({id})"),
            };
            format!("Disembargo(target={} {ctx})", target(d.get_target()?)?)
        }
        message::ObsoleteSave(_) => "ObsoleteSave".to_string(),
        message::ObsoleteDelete(_) => "ObsoleteDelete".to_string(),
        message::Provide(_) => "Provide".to_string(),
        message::Accept(_) => "Accept".to_string(),
        message::Join(_) => "Join".to_string(),
    })
}
