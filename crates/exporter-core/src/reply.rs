//! The body of an HTTP answer: whole, or a large scrape's text decompressed piece by piece
//! as the client reads it (for a client that does not accept gzip), so that the text of
//! 10,000 gateways (about 18 MB) never exists whole.

use std::{
    convert::Infallible,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http_body_util::Full;
use hyper::body::{Bytes, Frame, SizeHint};

use crate::{
    gzip::{self, Inflate},
    scrape::{Body, Rendered},
};

/// An answer's body.
#[derive(Debug)]
pub(crate) enum Reply {
    Whole(Full<Bytes>),
    Inflating(Box<Inflating>),
}

/// A prefix (the exporter's own metrics), then the text of a large scrape.
#[derive(Debug)]
pub(crate) struct Inflating {
    prefix: Option<Bytes>,
    rendered: Arc<Rendered>,
    inflate: Inflate,
    /// Bytes still to send (the size the answer announced).
    left: u64,
}

impl Reply {
    /// `prefix` followed by the text of `rendered`, whose body must be compressed (a text
    /// body is sent whole).
    pub(crate) fn inflating(prefix: Bytes, rendered: Arc<Rendered>) -> Reply {
        let text = match &rendered.body {
            Body::Deflated(deflated) => deflated.text_len(),
            Body::Text(text) => {
                return Reply::from([prefix.as_ref(), text.as_bytes()].concat());
            }
        };
        let left = prefix.len() as u64 + text;
        let prefix = (!prefix.is_empty()).then_some(prefix);
        Reply::Inflating(Box::new(Inflating {
            prefix,
            rendered,
            inflate: Inflate::default(),
            left,
        }))
    }

    /// The exact length of the body.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Reply::Whole(full) => hyper::body::Body::size_hint(full).exact().unwrap_or(0),
            Reply::Inflating(inflating) => inflating.left,
        }
    }
}

impl From<Bytes> for Reply {
    fn from(bytes: Bytes) -> Reply {
        Reply::Whole(Full::new(bytes))
    }
}

impl From<Vec<u8>> for Reply {
    fn from(bytes: Vec<u8>) -> Reply {
        Reply::from(Bytes::from(bytes))
    }
}

impl From<String> for Reply {
    fn from(text: String) -> Reply {
        Reply::from(Bytes::from(text))
    }
}

impl hyper::body::Body for Reply {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            Reply::Whole(full) => Pin::new(full)
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map_err(|never: Infallible| match never {}))),
            Reply::Inflating(inflating) => Poll::Ready(inflating.next()),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Reply::Whole(full) => full.is_end_stream(),
            Reply::Inflating(inflating) => inflating.left == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len())
    }
}

impl Inflating {
    fn next(&mut self) -> Option<Result<Frame<Bytes>, std::io::Error>> {
        let piece = match self.prefix.take() {
            Some(prefix) => Ok(prefix),
            None => {
                let Body::Deflated(deflated) = &self.rendered.body else { return None };
                match self.inflate.next(deflated, gzip::PIECE)? {
                    Ok(piece) => Ok(Bytes::from(piece)),
                    Err(why) => Err(why),
                }
            }
        };
        match piece {
            Ok(piece) if piece.len() as u64 <= self.left => {
                self.left -= piece.len() as u64;
                Some(Ok(Frame::data(piece)))
            }
            Ok(_) => Some(Err(self.fail("the compressed text is longer than recorded"))),
            Err(why) => Some(Err(self.fail(why))),
        }
    }

    /// Ends the answer early (the client sees it cut short of its announced length): the
    /// text cannot be decompressed, which a text compressed in memory never is.
    fn fail(&mut self, why: &'static str) -> std::io::Error {
        log::error!(target: "scrape", err = why; "cannot decompress a scrape's text");
        self.left = 0;
        std::io::Error::other(why)
    }
}
