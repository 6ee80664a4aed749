//! The typed value a handler returned, carried to the version layer in the response's
//! extensions so it is serialized once, in the right shape.

use std::{any::TypeId, fmt, sync::Arc};

use serde::Serialize;
use serde_json::Value;

use crate::{Shape, VersionedShape};

pub(crate) trait ErasedPayload: Send + Sync {
    fn to_bytes(&self) -> serde_json::Result<Vec<u8>>;
    fn to_value(&self) -> serde_json::Result<Value>;
    fn payload_type(&self) -> TypeId;
    fn shape_fn(&self) -> fn() -> Shape;
}

struct Typed<T>(T);

impl<T> ErasedPayload for Typed<T>
where
    T: Serialize + VersionedShape + Send + Sync + 'static,
{
    fn to_bytes(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(&self.0)
    }

    fn to_value(&self) -> serde_json::Result<Value> {
        serde_json::to_value(&self.0)
    }

    fn payload_type(&self) -> TypeId {
        TypeId::of::<T>()
    }

    fn shape_fn(&self) -> fn() -> Shape {
        T::shape
    }
}

/// A handler's value in the newest representation, waiting to be serialized for the version
/// the request negotiated. Lives in response extensions.
#[derive(Clone)]
pub struct VersionedPayload(pub(crate) Arc<dyn ErasedPayload>);

impl VersionedPayload {
    /// Wrap a value.
    pub fn new<T>(value: T) -> Self
    where
        T: Serialize + VersionedShape + Send + Sync + 'static,
    {
        Self(Arc::new(Typed(value)))
    }
}

impl fmt::Debug for VersionedPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VersionedPayload").finish_non_exhaustive()
    }
}
