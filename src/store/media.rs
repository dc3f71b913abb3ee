//! What a stored upload's header tells without decoding anything: a picture's width and
//! height, a WAV recording's length. Every reader here looks at a bounded number of bytes
//! and gives up (`None`) on anything it does not understand; an upload never fails on it.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// How many segments or chunks a header walk reads before it gives up.
const MAX_STEPS: usize = 1024;

/// Width and height of a picture, from the first bytes of the file (`head`, at least
/// [`super::attachments::SNIFF_BYTES`] when the file is that long) or, for JPEG, from its
/// frame header further in.
pub fn dimensions(path: &Path, head: &[u8], mime: &str) -> Option<(u32, u32)> {
    let found = match mime {
        "image/png" | "image/gif" => super::attachments::dimensions(head, mime),
        "image/webp" => webp_dimensions(head),
        "image/jpeg" => {
            let file = std::fs::File::open(path).ok()?;
            jpeg_dimensions(&mut BufReader::new(file))
        }
        _ => None,
    };
    found.filter(|&(w, h)| w > 0 && h > 0)
}

/// A WebP's canvas: `VP8X` (extended), `VP8L` (lossless) or `VP8 ` (lossy) right after the
/// RIFF header.
fn webp_dimensions(head: &[u8]) -> Option<(u32, u32)> {
    let byte = |i: usize| head.get(i).copied().map(u32::from);
    let u24 = |i: usize| Some(byte(i)? | byte(i + 1)? << 8 | byte(i + 2)? << 16);
    let u16le = |i: usize| Some(byte(i)? | byte(i + 1)? << 8);
    match head.get(12..16)? {
        b"VP8X" => Some((u24(24)? + 1, u24(27)? + 1)),
        b"VP8L" if byte(20)? == 0x2f => {
            let bits = byte(21)? | byte(22)? << 8 | byte(23)? << 16 | byte(24)? << 24;
            Some(((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1))
        }
        b"VP8 " if head.get(23..26)? == b"\x9d\x01\x2a" => {
            Some((u16le(26)? & 0x3fff, u16le(28)? & 0x3fff))
        }
        _ => None,
    }
}

/// A JPEG's size from its start-of-frame segment, walking the segments before it by their
/// lengths (nothing is decoded, nothing is held but one segment header).
fn jpeg_dimensions<R: Read + Seek>(r: &mut R) -> Option<(u32, u32)> {
    let mut two = [0u8; 2];
    r.read_exact(&mut two).ok()?;
    if two != [0xff, 0xd8] {
        return None;
    }
    for _ in 0..MAX_STEPS {
        let mut byte = [0u8; 1];
        r.read_exact(&mut byte).ok()?;
        if byte[0] != 0xff {
            return None;
        }
        // Fill bytes: any number of 0xFF before the marker.
        let mut marker = 0xff;
        for _ in 0..MAX_STEPS {
            r.read_exact(&mut byte).ok()?;
            marker = byte[0];
            if marker != 0xff {
                break;
            }
        }
        match marker {
            // Markers without a length: restart markers, TEM; the end of the image.
            0xd0..=0xd7 | 0x01 => continue,
            0xd9 | 0xff => return None,
            _ => {}
        }
        r.read_exact(&mut two).ok()?;
        let len = u16::from_be_bytes(two);
        if len < 2 {
            return None;
        }
        // SOF0..SOF15, but DHT (C4), JPG (C8) and DAC (CC) are not frames.
        if (0xc0..=0xcf).contains(&marker) && ![0xc4, 0xc8, 0xcc].contains(&marker) {
            let mut sof = [0u8; 5];
            r.read_exact(&mut sof).ok()?;
            let height = u16::from_be_bytes([sof[1], sof[2]]) as u32;
            let width = u16::from_be_bytes([sof[3], sof[4]]) as u32;
            return Some((width, height));
        }
        r.seek(SeekFrom::Current(i64::from(len) - 2)).ok()?;
    }
    None
}

/// Milliseconds of a WAV recording: its `data` chunk's size over the byte rate of its `fmt `
/// chunk, walking the RIFF chunks (the samples are never read).
pub fn wav_duration_ms(path: &Path) -> Option<u64> {
    let file = std::fs::File::open(path).ok()?;
    wav_duration(&mut BufReader::new(file))
}

fn wav_duration<R: Read + Seek>(r: &mut R) -> Option<u64> {
    let mut riff = [0u8; 12];
    r.read_exact(&mut riff).ok()?;
    if &riff[..4] != b"RIFF" || &riff[8..] != b"WAVE" {
        return None;
    }
    let mut byte_rate = None;
    for _ in 0..MAX_STEPS {
        let mut chunk = [0u8; 8];
        r.read_exact(&mut chunk).ok()?;
        let size = u32::from_le_bytes(chunk[4..].try_into().ok()?);
        match &chunk[..4] {
            b"fmt " if size >= 16 => {
                let mut fmt = [0u8; 16];
                r.read_exact(&mut fmt).ok()?;
                byte_rate = Some(u32::from_le_bytes(fmt[8..12].try_into().ok()?));
                r.seek(SeekFrom::Current(
                    i64::from(size - 16) + i64::from(size & 1),
                ))
                .ok()?;
            }
            b"data" => {
                let rate = u64::from(byte_rate.filter(|&b| b > 0)?);
                return Some(u64::from(size) * 1000 / rate);
            }
            // Chunks are padded to an even length.
            _ => {
                r.seek(SeekFrom::Current(i64::from(size) + i64::from(size & 1)))
                    .ok()?;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn encoded(format: image::ImageFormat, w: u32, h: u32) -> Vec<u8> {
        let img = image::DynamicImage::ImageRgb8(image::RgbImage::new(w, h));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn jpeg_size_comes_from_its_frame_header() {
        let mut jpeg = encoded(image::ImageFormat::Jpeg, 321, 123);
        assert_eq!(jpeg_dimensions(&mut Cursor::new(&jpeg)), Some((321, 123)));
        // An APP1 segment before the frame is skipped by its length.
        let app1 = [&[0xff, 0xe1, 0, 8][..], b"Exif\0\0"].concat();
        jpeg.splice(2..2, app1);
        assert_eq!(jpeg_dimensions(&mut Cursor::new(&jpeg)), Some((321, 123)));
        assert_eq!(jpeg_dimensions(&mut Cursor::new(b"\xff\xd8\xff")), None);
        assert_eq!(jpeg_dimensions(&mut Cursor::new(b"not a jpeg")), None);
    }

    #[test]
    fn webp_size_comes_from_its_first_chunk() {
        let lossless = encoded(image::ImageFormat::WebP, 300, 7);
        assert_eq!(webp_dimensions(&lossless), Some((300, 7)));
        let mut extended = b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\x10\0\0\0".to_vec();
        extended.extend([0x1f, 0x4e, 0x00, 0x0f, 0x27, 0x00]); // 20000 × 10000
        assert_eq!(webp_dimensions(&extended), Some((20_000, 10_000)));
        let mut lossy = b"RIFF\0\0\0\0WEBPVP8 \0\0\0\0\0\0\0\x9d\x01\x2a".to_vec();
        lossy.extend([0x40, 0x01, 0xf0, 0x00]); // 320 × 240
        assert_eq!(webp_dimensions(&lossy), Some((320, 240)));
        assert_eq!(webp_dimensions(b"RIFF\0\0\0\0WEBP"), None);
    }

    #[test]
    fn wav_length_comes_from_its_chunks() {
        // 8 kHz, 16-bit mono: 16,000 bytes a second; a LIST chunk (odd size, padded) first.
        let mut wav =
            b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x40\x1f\0\0\x80\x3e\0\0\x02\0\x10\0"
                .to_vec();
        wav.extend(b"LIST\x03\0\0\0abc\0");
        wav.extend(b"data");
        wav.extend(24_000u32.to_le_bytes());
        wav.extend([0u8; 100]);
        assert_eq!(wav_duration(&mut Cursor::new(&wav)), Some(1500));
        assert_eq!(
            wav_duration(&mut Cursor::new(b"RIFF\0\0\0\0WAVEdata")),
            None
        );
        assert_eq!(wav_duration(&mut Cursor::new(b"OggS")), None);
    }
}
