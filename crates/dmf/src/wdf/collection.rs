//! `WDFCOLLECTION`: an ordered list of framework objects of one handle type.
//!
//! The collection holds a reference on each object it contains (KMDF's behaviour), so an object
//! deleted while in the collection stays valid until it is removed or the collection is deleted.

use core::marker::PhantomData;

use wdk_sys::{
    WDFCOLLECTION, WDFIOTARGET, WDFMEMORY, WDFOBJECT, WDFREQUEST, WDFSPINLOCK, WDFTIMER,
    WDFWAITLOCK, WDFWORKITEM, call_unsafe_wdf_function_binding,
};

use super::object::ObjectAttributes;
use super::status::NtStatus;

mod sealed {
    pub trait Sealed {}
}

/// A WDF object handle type that a [`Collection`] can hold.
pub trait Handle: sealed::Sealed + Copy {
    /// The handle as a generic `WDFOBJECT`.
    fn to_object(self) -> WDFOBJECT;
    /// The handle from a `WDFOBJECT` the collection returned.
    fn from_object(object: WDFOBJECT) -> Self;
}

macro_rules! handles {
    ($($handle:ident),* $(,)?) => {$(
        impl sealed::Sealed for $handle {}
        impl Handle for $handle {
            fn to_object(self) -> WDFOBJECT {
                self.cast()
            }
            fn from_object(object: WDFOBJECT) -> Self {
                object.cast()
            }
        }
    )*};
}

handles!(
    WDFOBJECT,
    WDFMEMORY,
    WDFREQUEST,
    WDFIOTARGET,
    WDFTIMER,
    WDFWORKITEM,
    WDFSPINLOCK,
    WDFWAITLOCK,
    WDFCOLLECTION
);

/// A framework collection of `H` handles; deleted (dropping its references) when dropped.
///
/// Mutation takes `&mut self`, so indices seen through `&self` (`get`, `iter`) stay valid.
#[derive(Debug)]
pub struct Collection<H: Handle> {
    handle: WDFCOLLECTION,
    _items: PhantomData<H>,
}

// SAFETY: collection handles may be used from any thread; the framework locks the list.
unsafe impl<H: Handle> Send for Collection<H> {}
// SAFETY: `&self` only reads the list.
unsafe impl<H: Handle> Sync for Collection<H> {}

impl<H: Handle> Collection<H> {
    /// Creates an empty collection under `parent` (or the driver). `IRQL <= DISPATCH_LEVEL`.
    pub fn new(parent: Option<WDFOBJECT>) -> Result<Self, NtStatus> {
        let mut attributes = ObjectAttributes::new();
        if let Some(parent) = parent {
            attributes.set_parent(parent);
        }
        let mut handle: WDFCOLLECTION = core::ptr::null_mut();
        // SAFETY: the attributes are initialized; the out pointer is a valid local.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfCollectionCreate,
                attributes.as_mut_ptr(),
                &raw mut handle
            )
        };
        NtStatus::from_raw(status).into_result()?;
        Ok(Self {
            handle,
            _items: PhantomData,
        })
    }

    /// The raw handle.
    #[must_use]
    pub fn handle(&self) -> WDFCOLLECTION {
        self.handle
    }

    /// Number of objects.
    #[must_use]
    pub fn len(&self) -> usize {
        // SAFETY: `self` owns the live handle.
        unsafe { call_unsafe_wdf_function_binding!(WdfCollectionGetCount, self.handle) as usize }
    }

    /// Whether the collection is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `item`, taking a reference on it (`WdfCollectionAdd`).
    pub fn add(&mut self, item: H) -> Result<(), NtStatus> {
        // SAFETY: `self` owns the live handle; the framework validates `item`.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(WdfCollectionAdd, self.handle, item.to_object())
        };
        NtStatus::from_raw(status).into_result()
    }

    /// The object at `index`, if there is one.
    #[must_use]
    pub fn get(&self, index: usize) -> Option<H> {
        if index >= self.len() {
            return None;
        }
        let index = u32::try_from(index).ok()?;
        // SAFETY: `self` owns the live handle; the index is in range.
        let object =
            unsafe { call_unsafe_wdf_function_binding!(WdfCollectionGetItem, self.handle, index) };
        (!object.is_null()).then(|| H::from_object(object))
    }

    /// The first object, if any.
    #[must_use]
    pub fn first(&self) -> Option<H> {
        // SAFETY: `self` owns the live handle.
        let object =
            unsafe { call_unsafe_wdf_function_binding!(WdfCollectionGetFirstItem, self.handle) };
        (!object.is_null()).then(|| H::from_object(object))
    }

    /// The last object, if any.
    #[must_use]
    pub fn last(&self) -> Option<H> {
        // SAFETY: `self` owns the live handle.
        let object =
            unsafe { call_unsafe_wdf_function_binding!(WdfCollectionGetLastItem, self.handle) };
        (!object.is_null()).then(|| H::from_object(object))
    }

    /// Removes the object at `index`, dropping the collection's reference on it, and returns it
    /// (the handle may be stale if that was its last reference).
    pub fn remove_at(&mut self, index: usize) -> Option<H> {
        let item = self.get(index)?;
        let index = u32::try_from(index).ok()?;
        // SAFETY: `self` owns the live handle; the index is in range.
        unsafe { call_unsafe_wdf_function_binding!(WdfCollectionRemoveItem, self.handle, index) };
        Some(item)
    }

    /// Removes `item`, dropping the collection's reference on it; false if it is not there.
    pub fn remove(&mut self, item: H) -> bool {
        let object = item.to_object();
        if !self.iter().any(|other| other.to_object() == object) {
            return false;
        }
        // SAFETY: `self` owns the live handle; `item` is in the collection.
        unsafe { call_unsafe_wdf_function_binding!(WdfCollectionRemove, self.handle, object) };
        true
    }

    /// Whether `item` is in the collection.
    #[must_use]
    pub fn contains(&self, item: H) -> bool {
        let object = item.to_object();
        self.iter().any(|other| other.to_object() == object)
    }

    /// The objects, in order.
    pub fn iter(&self) -> impl Iterator<Item = H> + '_ {
        (0..self.len()).filter_map(move |index| self.get(index))
    }
}

impl<H: Handle> Drop for Collection<H> {
    fn drop(&mut self) {
        // SAFETY: `self` owns the handle; it is deleted exactly once.
        unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, self.handle.cast()) };
    }
}
