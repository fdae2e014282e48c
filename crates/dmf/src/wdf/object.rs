//! `WDF_OBJECT_ATTRIBUTES` and object references.

use wdk_sys::{_WDF_EXECUTION_LEVEL, _WDF_SYNCHRONIZATION_SCOPE, WDF_OBJECT_ATTRIBUTES, WDFOBJECT};

/// `WDF_OBJECT_ATTRIBUTES`, initialized as `WDF_OBJECT_ATTRIBUTES_INIT` does.
#[derive(Debug, Clone, Copy)]
pub struct ObjectAttributes(WDF_OBJECT_ATTRIBUTES);

impl ObjectAttributes {
    /// Attributes with no parent, context or callbacks.
    #[must_use]
    pub fn new() -> Self {
        Self(WDF_OBJECT_ATTRIBUTES {
            Size: size_of::<WDF_OBJECT_ATTRIBUTES>() as u32,
            ExecutionLevel: _WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent,
            SynchronizationScope:
                _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent,
            ..WDF_OBJECT_ATTRIBUTES::default()
        })
    }

    /// Makes `parent` the new object's parent: it is deleted with it.
    pub fn set_parent(&mut self, parent: WDFOBJECT) -> &mut Self {
        self.0.ParentObject = parent;
        self
    }

    /// Wraps fully initialized attributes (context type, callbacks) built inside this layer.
    pub(crate) const fn from_raw(raw: WDF_OBJECT_ATTRIBUTES) -> Self {
        Self(raw)
    }

    /// Pointer for a framework call.
    pub fn as_mut_ptr(&mut self) -> *mut WDF_OBJECT_ATTRIBUTES {
        &raw mut self.0
    }
}

impl Default for ObjectAttributes {
    fn default() -> Self {
        Self::new()
    }
}
