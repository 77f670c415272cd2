//! Why a client frame was refused: a [`Refusal`] goes back to the client as
//! `{"type":"error","code","detail"}`, with one of PROTOCOL.md's error
//! codes ([`Code`]), and a core [`channelbox::Error`] becomes the code that
//! says what happened.

/// The `code` of an `error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Not JSON, a missing or wrong field.
    BadRequest,
    /// A frame type this endpoint does not take.
    UnknownType,
    /// An unknown message or room.
    NotFound,
    /// Not allowed to the caller (not the author, not the owner).
    Forbidden,
    /// Larger than the hub takes (a message, an emoji, a list).
    TooLarge,
    /// Over a rate limit.
    RateLimited,
    /// The caller is muted in this room.
    Muted,
    /// The hub cannot do it now: the shared engine (Redis) is unreachable.
    Unavailable,
}

impl Code {
    /// The code as the wire spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadRequest => "bad_request",
            Code::UnknownType => "unknown_type",
            Code::NotFound => "not_found",
            Code::Forbidden => "forbidden",
            Code::TooLarge => "too_large",
            Code::RateLimited => "rate_limited",
            Code::Muted => "muted",
            Code::Unavailable => "unavailable",
        }
    }
}

/// Why a client frame was refused: sent back as an `error` frame.
#[derive(Debug)]
pub struct Refusal {
    /// What went wrong, for programs.
    pub code: Code,
    /// What went wrong, for people.
    pub detail: String,
}

impl Refusal {
    /// A refusal with `code`.
    pub fn new(code: Code, detail: impl Into<String>) -> Refusal {
        Refusal {
            code,
            detail: detail.into(),
        }
    }

    /// `bad_request`: not JSON, a missing or wrong field.
    pub fn bad_request(detail: impl Into<String>) -> Refusal {
        Refusal::new(Code::BadRequest, detail)
    }

    /// `unknown_type`: a frame type this endpoint does not take.
    pub fn unknown_type(detail: impl Into<String>) -> Refusal {
        Refusal::new(Code::UnknownType, detail)
    }

    /// `not_found`: an unknown message or room.
    pub fn not_found(detail: impl Into<String>) -> Refusal {
        Refusal::new(Code::NotFound, detail)
    }

    /// `forbidden`: not the caller's to do.
    pub fn forbidden(detail: impl Into<String>) -> Refusal {
        Refusal::new(Code::Forbidden, detail)
    }

    /// `too_large`: larger than the hub takes.
    pub fn too_large(detail: impl Into<String>) -> Refusal {
        Refusal::new(Code::TooLarge, detail)
    }

    /// `rate_limited`: over a rate limit.
    pub fn rate_limited(detail: impl Into<String>) -> Refusal {
        Refusal::new(Code::RateLimited, detail)
    }

    /// `muted`: the caller is muted in this room.
    pub fn muted() -> Refusal {
        Refusal::new(Code::Muted, "you are muted in this room")
    }
}

impl From<channelbox::Error> for Refusal {
    fn from(error: channelbox::Error) -> Refusal {
        use channelbox::Error;
        let code = match &error {
            Error::TooLarge(_) => Code::TooLarge,
            Error::InvalidArgument(_) | Error::InvalidUtf8(_) | Error::InvalidJson(_) => {
                Code::BadRequest
            }
            Error::NoSuchMessage { .. } => Code::NotFound,
            // The engine is down, or the connection is closing: nothing the
            // client sent was wrong.
            _ => Code::Unavailable,
        };
        Refusal::new(code, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_say_what_happened() {
        let code = |e| Refusal::from(e).code.as_str();
        assert_eq!(
            code(channelbox::Error::TooLarge("9 bytes".into())),
            "too_large"
        );
        assert_eq!(
            code(channelbox::Error::InvalidArgument("group".into())),
            "bad_request"
        );
        let missing = channelbox::Error::NoSuchMessage {
            group: "room:a".into(),
            offset: 7,
        };
        assert_eq!(code(missing), "not_found");
        assert_eq!(
            code(channelbox::Error::EngineUnavailable("redis".into())),
            "unavailable"
        );
    }
}
