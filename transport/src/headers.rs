//! Extra request headers computed from each body: the hook the host uses to
//! sign batches (`X-Halyard-Signature`) without the transport knowing about
//! keys.

use std::fmt;
use std::sync::Arc;

/// The function behind a [`HeaderHook`].
type HeaderFn = dyn Fn(&[u8]) -> Vec<(String, String)> + Send + Sync;

/// Computes `(name, value)` headers for a request body. It is called with
/// the exact bytes before compression, once per attempt.
#[derive(Clone)]
pub struct HeaderHook(Arc<HeaderFn>);

impl HeaderHook {
    /// Wraps `f`.
    pub fn new(f: impl Fn(&[u8]) -> Vec<(String, String)> + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// The headers for `body`.
    pub fn headers(&self, body: &[u8]) -> Vec<(String, String)> {
        (self.0)(body)
    }
}

impl PartialEq for HeaderHook {
    /// Two hooks are equal only if they are the same hook.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for HeaderHook {
    /// Never prints the headers: they may carry signatures or secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HeaderHook(..)")
    }
}
