//! Embedded files sent as browsers and caches like them: brotli or gzip by
//! `Accept-Encoding` (each compressed once, at first use), a strong `ETag` per encoding,
//! `304 Not Modified` on `If-None-Match`, and `Vary: Accept-Encoding` so a shared cache
//! keeps the encodings apart. A URL that carries the content's version (`?v=<version>`)
//! may be cached for a year; the plain URL for five minutes, so a new release is picked up
//! soon without one.

use std::io::Write;
use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use sha2::{Digest, Sha256};

/// Short: a new release is picked up within minutes at the plain URL.
const SHORT: &str = "public, max-age=300";
/// The versioned URL's content never changes.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub struct Asset {
    content_type: &'static str,
    body: &'static str,
    version: OnceLock<String>,
    gzip: OnceLock<Vec<u8>>,
    brotli: OnceLock<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Brotli,
    Gzip,
    Identity,
}

impl Encoding {
    fn token(self) -> Option<&'static str> {
        match self {
            Encoding::Brotli => Some("br"),
            Encoding::Gzip => Some("gzip"),
            Encoding::Identity => None,
        }
    }

    /// What a request's `Accept-Encoding` prefers of what we have: brotli (smallest) when
    /// it is acceptable at least as much as gzip, then gzip, else the file as it is.
    pub fn pick(headers: &HeaderMap) -> Encoding {
        let accepted: Vec<(String, f32)> = headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|item| {
                let mut parts = item.split(';');
                let name = parts.next()?.trim().to_ascii_lowercase();
                let q = parts
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())?;
                (!name.is_empty()).then_some((name, q))
            })
            .collect();
        let q = |name: &str| {
            accepted
                .iter()
                .find(|(n, _)| n == name)
                .or_else(|| accepted.iter().find(|(n, _)| n == "*"))
                .map_or(0.0, |(_, q)| *q)
        };
        let (br, gzip) = (q("br"), q("gzip"));
        if br > 0.0 && br >= gzip {
            Encoding::Brotli
        } else if gzip > 0.0 {
            Encoding::Gzip
        } else {
            Encoding::Identity
        }
    }
}

impl Asset {
    pub const fn new(content_type: &'static str, body: &'static str) -> Asset {
        Asset {
            content_type,
            body,
            version: OnceLock::new(),
            gzip: OnceLock::new(),
            brotli: OnceLock::new(),
        }
    }

    /// The first 16 hex digits of the content's SHA-256: the `?v=` of its immutable URL.
    pub fn version(&self) -> &str {
        self.version.get_or_init(|| {
            let digest = Sha256::digest(self.body.as_bytes());
            hex::encode(&digest[..8])
        })
    }

    /// The bytes sent for an encoding.
    pub fn bytes(&self, encoding: Encoding) -> &[u8] {
        match encoding {
            Encoding::Identity => self.body.as_bytes(),
            Encoding::Gzip => self.gzip.get_or_init(|| gzip(self.body.as_bytes())),
            Encoding::Brotli => self.brotli.get_or_init(|| brotli(self.body.as_bytes())),
        }
    }

    /// A strong validator per encoding: the encodings are different bytes.
    fn etag(&self, encoding: Encoding) -> String {
        match encoding.token() {
            Some(token) => format!("\"{}-{token}\"", self.version()),
            None => format!("\"{}\"", self.version()),
        }
    }

    /// Whether `If-None-Match` names what we have, in any encoding (a cache may hold a
    /// different one than this request gets).
    fn not_modified(&self, headers: &HeaderMap) -> bool {
        let ours = [Encoding::Identity, Encoding::Gzip, Encoding::Brotli].map(|e| self.etag(e));
        headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|tag| tag.trim())
            .any(|tag| tag == "*" || ours.iter().any(|o| tag.trim_start_matches("W/") == o))
    }

    /// The response to a `GET` with `headers`; `versioned` when the URL named this
    /// content's version.
    pub fn respond(&'static self, headers: &HeaderMap, versioned: bool) -> Response {
        let encoding = Encoding::pick(headers);
        let cache = if versioned { IMMUTABLE } else { SHORT };
        let builder = Response::builder()
            .header(header::ETAG, self.etag(encoding))
            .header(header::CACHE_CONTROL, cache)
            .header(header::VARY, "Accept-Encoding");
        if self.not_modified(headers) {
            return builder
                .status(StatusCode::NOT_MODIFIED)
                .body(Body::empty())
                .expect("static headers are valid");
        }
        let mut builder = builder
            .header(header::CONTENT_TYPE, self.content_type)
            .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
        if let Some(token) = encoding.token() {
            builder = builder.header(header::CONTENT_ENCODING, HeaderValue::from_static(token));
        }
        builder
            .body(Body::from(self.bytes(encoding)))
            .expect("static headers are valid")
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    out.write_all(bytes).expect("writing to memory");
    out.finish().expect("writing to memory")
}

fn brotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality: 11,
        lgwin: 22,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut &bytes[..], &mut out, &params).expect("writing to memory");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn accept(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, value.parse().unwrap());
        h
    }

    #[test]
    fn the_encoding_follows_accept_encoding() {
        use Encoding::*;
        for (value, wanted) in [
            ("gzip, deflate, br, zstd", Brotli),
            ("gzip, deflate", Gzip),
            ("br;q=0.5, gzip", Gzip),
            ("br;q=1.0, gzip;q=0.9", Brotli),
            ("GZIP", Gzip),
            ("identity", Identity),
            ("*", Brotli),
            ("*;q=0, gzip", Gzip),
            ("br;q=0, gzip;q=0", Identity),
            ("br;q=nonsense, gzip", Gzip),
            ("", Identity),
            (" , ;q=1", Identity),
        ] {
            assert_eq!(Encoding::pick(&accept(value)), wanted, "{value:?}");
        }
        assert_eq!(Encoding::pick(&HeaderMap::new()), Identity);
    }

    #[test]
    fn every_encoding_decodes_to_the_file() {
        static A: Asset = Asset::new("text/plain", "hello hello hello hello hello hello");
        let mut text = String::new();
        flate2::read::GzDecoder::new(A.bytes(Encoding::Gzip))
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, A.body);
        let mut text = String::new();
        brotli::Decompressor::new(A.bytes(Encoding::Brotli), 4096)
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, A.body);
        assert_eq!(A.version().len(), 16);
    }

    #[test]
    fn if_none_match_with_any_of_our_tags_is_not_modified() {
        static A: Asset = Asset::new("text/plain", "body");
        let v = A.version().to_string();
        let asked = |value: &str| {
            let mut h = accept("gzip");
            h.insert(header::IF_NONE_MATCH, value.parse().unwrap());
            A.respond(&h, false).status()
        };
        assert_eq!(asked(&format!("\"{v}-gzip\"")), StatusCode::NOT_MODIFIED);
        assert_eq!(asked(&format!("\"{v}-br\"")), StatusCode::NOT_MODIFIED);
        assert_eq!(
            asked(&format!("\"x\", W/\"{v}\"")),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(asked("*"), StatusCode::NOT_MODIFIED);
        assert_eq!(asked("\"0123456789abcdef-gzip\""), StatusCode::OK);
        assert_eq!(asked(&v), StatusCode::OK, "an unquoted tag is no tag");
    }
}
