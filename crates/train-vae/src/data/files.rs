//! Data from disk (IDX or `.amat`, by path or in an MNIST directory) and the digits
//! compiled into the binary.

use std::path::{Path, PathBuf};

use super::{
    error::DataError,
    formats::{parse_amat, parse_idx_images, parse_idx_labels},
    images::Images,
};

/// The gzipped IDX images of the first 10,000 MNIST training digits.
pub static EMBEDDED_IMAGES: &[u8] =
    include_bytes!("../../data/mnist-train-10k-images-idx3-ubyte.gz");
/// The matching gzipped IDX labels.
pub static EMBEDDED_LABELS: &[u8] =
    include_bytes!("../../data/mnist-train-10k-labels-idx1-ubyte.gz");

/// Reads images from `path`: `.amat` text (28 × 28) by extension, otherwise IDX (gzipped or
/// not, told apart by content).
pub fn read_images(path: &Path) -> Result<Images, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let what = path.display().to_string();
    if path.extension().is_some_and(|e| e == "amat") {
        let text = String::from_utf8_lossy(&bytes);
        parse_amat(&text, &what, 28, 28)
    } else {
        parse_idx_images(&bytes, &what)
    }
}

/// Reads IDX labels from `path` and checks that they pair up with `images`.
pub fn read_labels(path: &Path, images: &Images) -> Result<Vec<u8>, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let labels = parse_idx_labels(&bytes, &path.display().to_string())?;
    if labels.len() != images.len() {
        return Err(DataError::LabelCount {
            what: path.display().to_string(),
            labels: labels.len(),
            images: images.len(),
        });
    }
    Ok(labels)
}

/// The standard MNIST file names in a directory (`train-images-idx3-ubyte` and
/// `t10k-images-idx3-ubyte`, each optionally `.gz`): returns `(train, test)` paths.
pub fn find_mnist(dir: &Path) -> Result<(PathBuf, PathBuf), DataError> {
    let find = |name: &'static str| {
        [name.to_string(), format!("{name}.gz")]
            .into_iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
            .ok_or(DataError::MissingInDir {
                dir: dir.to_path_buf(),
                name,
            })
    };
    Ok((
        find("train-images-idx3-ubyte")?,
        find("t10k-images-idx3-ubyte")?,
    ))
}

/// The embedded 10,000 digits.
pub fn embedded_images() -> Result<Images, DataError> {
    parse_idx_images(EMBEDDED_IMAGES, "embedded MNIST images")
}

/// The labels of the embedded digits.
pub fn embedded_labels() -> Result<Vec<u8>, DataError> {
    parse_idx_labels(EMBEDDED_LABELS, "embedded MNIST labels")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_subset_is_the_first_10k_training_digits() {
        let images = embedded_images().unwrap();
        let labels = embedded_labels().unwrap();
        assert_eq!((images.len(), images.rows, images.cols), (10_000, 28, 28));
        assert_eq!(labels.len(), 10_000);
        // The first MNIST training digits are 5, 0, 4, 1, 9, 2, 1, 3, 1, 4.
        assert_eq!(&labels[..10], &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    }

    #[test]
    fn missing_files_are_named() {
        let e = read_images(Path::new("/nonexistent/mnist.idx")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/mnist.idx"), "{e}");
        let e = find_mnist(Path::new("/")).unwrap_err();
        assert!(e.to_string().contains("train-images-idx3-ubyte"), "{e}");
    }

    #[test]
    fn fixed_binarization_is_seeded_and_has_the_right_mean() {
        let images = embedded_images().unwrap().slice(0..200);
        let a = images.binarize(1234);
        assert_eq!(a, images.binarize(1234));
        assert_ne!(a, images.binarize(1235));
        let mean_bits = a.iter().sum::<f32>() / a.len() as f32;
        let mean_grey = images.intensities().iter().sum::<f32>() / a.len() as f32;
        assert!(
            (mean_bits - mean_grey).abs() < 0.005,
            "{mean_bits} vs {mean_grey}"
        );
    }
}
