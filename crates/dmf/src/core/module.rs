//! `Module<N>`: the owner of a module tree. Dropping it closes the tree.

use alloc::sync::Arc;
use core::ops::Deref;

use super::lifecycle;
use super::node::ModuleNode;
use crate::error::{ConfigError, ModuleError};

/// Owns one module (and through it, its children).
///
/// Created by each module type's `create`; a dynamic module is opened before `create` returns,
/// a static one when its [`DeviceModules`](super::DeviceModules) collection is told the device
/// was created. Dropping the owner closes the module, then its children in reverse order
/// (waiting, at `PASSIVE_LEVEL`, for references in flight).
pub struct Module<N: ModuleNode + 'static> {
    node: Arc<N>,
}

impl<N: ModuleNode + 'static> Module<N> {
    /// Takes ownership of a built module: opens it now if it is dynamic (per its open option),
    /// or leaves it for a collection if it is static.
    pub fn new(node: N) -> Result<Self, ModuleError> {
        let module = Self {
            node: Arc::new(node),
        };
        let core = module.node.core();
        if core.is_dynamic() {
            if module.node.has_pnp_callbacks() {
                return Err(ConfigError::DynamicModuleWithPnpCallbacks.into());
            }
            lifecycle::open_on_create(&*module.node)?;
        }
        Ok(module)
    }

    /// As [`Module::new`], for a node that keeps a weak handle to itself (to give framework
    /// callbacks it registers later: they must not keep the module alive). `build` receives
    /// that handle; it cannot be upgraded before `build` returns.
    pub fn new_cyclic(build: impl FnOnce(&alloc::sync::Weak<N>) -> N) -> Result<Self, ModuleError> {
        let module = Self {
            node: Arc::new_cyclic(build),
        };
        let core = module.node.core();
        if core.is_dynamic() {
            if module.node.has_pnp_callbacks() {
                return Err(ConfigError::DynamicModuleWithPnpCallbacks.into());
            }
            lifecycle::open_on_create(&*module.node)?;
        }
        Ok(module)
    }

    /// Takes ownership of a child built by its parent: it is opened by the parent's tree.
    pub fn new_child(node: N) -> Self {
        Self {
            node: Arc::new(node),
        }
    }

    /// The module as a tree node.
    #[must_use]
    pub fn node(&self) -> &N {
        &self.node
    }

    /// The module as a shared tree node (for a collection).
    #[must_use]
    pub fn shared(&self) -> Arc<N> {
        Arc::clone(&self.node)
    }

    /// A weak handle to the node, for callbacks the node itself owns (no reference cycle).
    #[must_use]
    pub fn downgrade(&self) -> alloc::sync::Weak<N> {
        Arc::downgrade(&self.node)
    }
}

impl<N: ModuleNode + 'static> Deref for Module<N> {
    type Target = N;

    fn deref(&self) -> &N {
        &self.node
    }
}

impl<N: ModuleNode + 'static> AsRef<Module<N>> for Module<N> {
    fn as_ref(&self) -> &Module<N> {
        self
    }
}

impl<N: ModuleNode + 'static> Drop for Module<N> {
    fn drop(&mut self) {
        lifecycle::close_on_destroy(&*self.node);
    }
}

impl<N: ModuleNode + core::fmt::Debug + 'static> core::fmt::Debug for Module<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.node.fmt(f)
    }
}
