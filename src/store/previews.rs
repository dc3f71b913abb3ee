//! Previews of pictures: a smaller copy, made by the server when a raster image is uploaded
//! and kept beside the original (`files/ab/<sha256>.preview`, so one content has one preview
//! and both go together, `attachments::remove_unreferenced`). Re-encoding leaves every piece
//! of metadata behind (EXIF, GPS, comments); the original is kept as sent.
//!
//! Decoding is bounded, so a decompression bomb costs nothing: the size is read from the
//! header first ([`super::media::dimensions`]) and a picture over [`MAX_PIXELS`] is never
//! decoded; the decoder itself is held to that size and to [`MAX_DECODE_BYTES`] by
//! `image::Limits`; decoding runs on a blocking thread, at most [`decoders`] at a time, so
//! uploads cannot take every core from the chats. A picture that cannot be decoded simply
//! has no preview.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{DynamicImage, ImageDecoder, ImageEncoder, ImageFormat, ImageReader, Limits};
use tokio::sync::Semaphore;

/// The largest picture that is decoded, in pixels (width × height from its header).
pub const MAX_PIXELS: u64 = 40_000_000;
/// The most memory the decoder may take for one picture, its decoded pixels included.
pub const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;
/// A preview fits in this many pixels each way (pictures smaller are re-encoded as they are).
pub const BOX: u32 = 800;
/// JPEG quality of previews without transparency.
pub const JPEG_QUALITY: u8 = 80;

/// Where the preview of the file with this content is kept.
pub fn preview_path(data_dir: &Path, sha256: &str) -> PathBuf {
    let mut path = super::attachments::file_path(data_dir, sha256).into_os_string();
    path.push(".preview");
    PathBuf::from(path)
}

/// The type of a preview stored already (another upload of the same content made it).
pub fn existing(data_dir: &Path, sha256: &str) -> Option<&'static str> {
    use std::io::Read;
    let mut head = [0u8; 16];
    let mut file = std::fs::File::open(preview_path(data_dir, sha256)).ok()?;
    let n = file.read(&mut head).ok()?;
    match super::attachments::sniff(&head[..n]).mime {
        m @ ("image/jpeg" | "image/png") => Some(m),
        _ => None,
    }
}

/// How many pictures are decoded at once: half the cores, one or two.
pub fn decoders() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 2).clamp(1, 2)
}

fn permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| Semaphore::new(decoders()))
}

/// Whether a picture of this size (from its header) may be decoded.
pub fn within_bounds((width, height): (u32, u32)) -> bool {
    width > 0 && height > 0 && u64::from(width) * u64::from(height) <= MAX_PIXELS
}

/// Makes the preview of the picture at `source` (of type `mime`, `size` from its header)
/// into `out`: its type, or `None` when there is none (too large, not a picture we decode,
/// or the decoder refused or failed). Waits its turn among the [`decoders`].
pub async fn make(
    source: PathBuf,
    mime: &str,
    size: Option<(u32, u32)>,
    out: PathBuf,
) -> Option<&'static str> {
    let format = match mime {
        "image/png" => ImageFormat::Png,
        "image/jpeg" => ImageFormat::Jpeg,
        "image/gif" => ImageFormat::Gif,
        "image/webp" => ImageFormat::WebP,
        _ => return None,
    };
    // No size from the header, no decoding: the bound is checked before any pixel.
    let size = size?;
    if !within_bounds(size) {
        tracing::info!(
            width = size.0,
            height = size.1,
            "picture too large for a preview"
        );
        return None;
    }
    let _permit = permits().acquire().await.ok()?;
    let made = tokio::task::spawn_blocking(move || make_blocking(&source, format, size, &out))
        .await
        .ok()?;
    match made {
        Ok(mime) => Some(mime),
        Err(e) => {
            tracing::info!(error = %e, "no preview for a picture");
            None
        }
    }
}

/// Decodes, scales and re-encodes, on the calling (blocking) thread.
pub fn make_blocking(
    source: &Path,
    format: ImageFormat,
    (width, height): (u32, u32),
    out: &Path,
) -> anyhow::Result<&'static str> {
    let mut reader = ImageReader::open(source)?;
    reader.set_format(format);
    let mut limits = Limits::default();
    // The decoder must agree with the header that was checked.
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let mut decoder = reader.into_decoder()?;
    anyhow::ensure!(
        decoder.total_bytes() <= MAX_DECODE_BYTES,
        "{} bytes decoded is over the bound",
        decoder.total_bytes()
    );
    // The metadata goes, so a photo's orientation is applied to its pixels.
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder)?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    if img.width() > BOX || img.height() > BOX {
        img = img.thumbnail(BOX, BOX);
    }
    let see_through = img.color().has_alpha() && img.to_rgba8().pixels().any(|p| p[3] < 255);
    let mut file = BufWriter::new(std::fs::File::create(out)?);
    let mime = if see_through {
        let rgba = img.to_rgba8();
        PngEncoder::new(&mut file).write_image(
            rgba.as_raw(),
            rgba.width(),
            rgba.height(),
            image::ExtendedColorType::Rgba8,
        )?;
        "image/png"
    } else {
        let rgb = img.to_rgb8();
        JpegEncoder::new_with_quality(&mut file, JPEG_QUALITY).encode_image(&rgb)?;
        "image/jpeg"
    };
    file.flush()?;
    file.into_inner()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .sync_all()?;
    Ok(mime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_pictures_shrink_and_transparent_ones_stay_png() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("in.png");
        let out = dir.path().join("out");
        let mut img = image::RgbaImage::from_pixel(1600, 400, image::Rgba([10, 20, 30, 255]));
        img.save_with_format(&src, ImageFormat::Png).unwrap();
        assert_eq!(
            make_blocking(&src, ImageFormat::Png, (1600, 400), &out).unwrap(),
            "image/jpeg"
        );
        let made = image::load_from_memory(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!((made.width(), made.height()), (800, 200));

        img.put_pixel(0, 0, image::Rgba([0, 0, 0, 0]));
        img.save_with_format(&src, ImageFormat::Png).unwrap();
        assert_eq!(
            make_blocking(&src, ImageFormat::Png, (1600, 400), &out).unwrap(),
            "image/png"
        );
    }

    #[test]
    fn the_decoder_is_held_to_the_header_it_was_checked_by() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("in.png");
        image::RgbImage::new(50, 50)
            .save_with_format(&src, ImageFormat::Png)
            .unwrap();
        // Told it is 10 × 10, the decoder finds 50 × 50 and refuses.
        assert!(make_blocking(&src, ImageFormat::Png, (10, 10), &dir.path().join("o")).is_err());
        assert!(!within_bounds((20_000, 20_000)));
        assert!(within_bounds((4000, 3000)));
        assert!(!within_bounds((0, 10)));
    }
}
