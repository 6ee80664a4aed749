/// A response body was cut because the shutdown deadline passed while it was still streaming.
#[derive(Debug, Clone, Copy, Default, thiserror::Error)]
#[error("response cut: the shutdown deadline passed while it was still streaming")]
pub struct Cut;
