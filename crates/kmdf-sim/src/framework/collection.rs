//! `WDFCOLLECTION`: an ordered list of framework objects. Adding an object takes a reference on
//! it and removing it drops that reference, so an object deleted while in a collection stays
//! valid until it leaves the collection. Deleting the collection drops every reference it holds.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::object::{self, Attributes, Object, Payload};
use super::table::Entry;
use super::verifier::{self, rules};
use super::{faults, irql, wdf_entry};
use crate::constants::{STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER, STATUS_SUCCESS};
use crate::types::{
    NTSTATUS, PWDF_DRIVER_GLOBALS, PWDF_OBJECT_ATTRIBUTES, ULONG, WDFCOLLECTION, WDFOBJECT,
};

/// KMDF type name of collections.
pub(crate) const KIND: &str = "WDFCOLLECTION";

/// The objects a collection holds, each with a reference.
pub(crate) struct Collection {
    items: Mutex<Vec<Arc<Object>>>,
}

impl Collection {
    fn items(&self) -> MutexGuard<'_, Vec<Arc<Object>>> {
        self.items.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Payload for Collection {
    fn dispose(&self, _handle: usize) {
        let items = core::mem::take(&mut *self.items());
        for item in &items {
            object::dereference(item, "WdfObjectDelete(WDFCOLLECTION)");
        }
    }
}

fn lookup(collection: WDFCOLLECTION, api: &str) -> Option<Arc<Object>> {
    if !irql::require_at_most(irql::DISPATCH, api) {
        return None;
    }
    object::lookup_payload::<Collection>(object::handle_of(collection), KIND, api)
}

fn with_items<R>(
    collection: WDFCOLLECTION,
    api: &str,
    f: impl FnOnce(&Object, &mut Vec<Arc<Object>>) -> R,
) -> Option<R> {
    let object = lookup(collection, api)?;
    let payload = object.payload::<Collection>()?;
    let mut items = payload.items();
    Some(f(&object, &mut items))
}

fn index_not_found(collection: &Object, index: ULONG, count: usize, api: &str) {
    verifier::report(
        rules::COLLECTION_ITEM_NOT_FOUND,
        collection,
        format!("{api}: index {index} is out of range (count is {count})"),
    );
}

unsafe extern "C" fn wdf_collection_create(
    _globals: PWDF_DRIVER_GLOBALS,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    collection: *mut WDFCOLLECTION,
) -> NTSTATUS {
    const API: &str = "WdfCollectionCreate";
    if !irql::require_at_most(irql::DISPATCH, API) {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    if collection.is_null() {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "null Collection pointer".to_string(),
        );
        return STATUS_INVALID_PARAMETER;
    }
    let attributes = match Attributes::read(attributes, API) {
        Ok(attributes) => attributes,
        Err(status) => return status,
    };
    let payload = Collection {
        items: Mutex::new(Vec::new()),
    };
    match object::create(
        KIND,
        &attributes,
        object::default_parent(),
        Box::new(payload),
    ) {
        Ok(handle) => {
            // SAFETY: `collection` is non-null and writable by the API contract.
            unsafe { collection.write(object::handle_ptr(handle)) };
            STATUS_SUCCESS
        }
        Err(status) => status,
    }
}

unsafe extern "C" fn wdf_collection_get_count(
    _globals: PWDF_DRIVER_GLOBALS,
    collection: WDFCOLLECTION,
) -> ULONG {
    with_items(collection, "WdfCollectionGetCount", |_, items| {
        items.len() as ULONG
    })
    .unwrap_or(0)
}

unsafe extern "C" fn wdf_collection_add(
    _globals: PWDF_DRIVER_GLOBALS,
    collection: WDFCOLLECTION,
    item: WDFOBJECT,
) -> NTSTATUS {
    const API: &str = "WdfCollectionAdd";
    let Some(target) = lookup(collection, API) else {
        return STATUS_INVALID_PARAMETER;
    };
    let Some(payload) = target.payload::<Collection>() else {
        return STATUS_INVALID_PARAMETER;
    };
    let Some(item) = object::lookup(object::handle_of(item), None, API) else {
        return STATUS_INVALID_PARAMETER;
    };
    if let Err(status) = faults::hit(faults::FaultPoint::Allocation) {
        return status;
    }
    object::reference(&item);
    payload.items().push(item);
    STATUS_SUCCESS
}

unsafe extern "C" fn wdf_collection_remove(
    _globals: PWDF_DRIVER_GLOBALS,
    collection: WDFCOLLECTION,
    item: WDFOBJECT,
) {
    const API: &str = "WdfCollectionRemove";
    let handle = object::handle_of(item);
    let removed = with_items(collection, API, |target, items| {
        let found = items
            .iter()
            .position(|object| object.handle == handle)
            .map(|index| items.remove(index));
        if found.is_none() {
            verifier::report(
                rules::COLLECTION_ITEM_NOT_FOUND,
                target,
                format!("{API}: object {handle:#x} is not in it"),
            );
        }
        found
    });
    if let Some(Some(object)) = removed {
        object::dereference(&object, API);
    }
}

unsafe extern "C" fn wdf_collection_remove_item(
    _globals: PWDF_DRIVER_GLOBALS,
    collection: WDFCOLLECTION,
    index: ULONG,
) {
    const API: &str = "WdfCollectionRemoveItem";
    let removed = with_items(collection, API, |target, items| {
        if (index as usize) < items.len() {
            Some(items.remove(index as usize))
        } else {
            index_not_found(target, index, items.len(), API);
            None
        }
    });
    if let Some(Some(object)) = removed {
        object::dereference(&object, API);
    }
}

unsafe extern "C" fn wdf_collection_get_item(
    _globals: PWDF_DRIVER_GLOBALS,
    collection: WDFCOLLECTION,
    index: ULONG,
) -> WDFOBJECT {
    const API: &str = "WdfCollectionGetItem";
    with_items(collection, API, |target, items| {
        if let Some(object) = items.get(index as usize) {
            object::handle_ptr(object.handle)
        } else {
            index_not_found(target, index, items.len(), API);
            core::ptr::null_mut()
        }
    })
    .unwrap_or(core::ptr::null_mut())
}

unsafe extern "C" fn wdf_collection_get_first_item(
    _globals: PWDF_DRIVER_GLOBALS,
    collection: WDFCOLLECTION,
) -> WDFOBJECT {
    with_items(collection, "WdfCollectionGetFirstItem", |_, items| {
        items.first().map_or(core::ptr::null_mut(), |object| {
            object::handle_ptr(object.handle)
        })
    })
    .unwrap_or(core::ptr::null_mut())
}

unsafe extern "C" fn wdf_collection_get_last_item(
    _globals: PWDF_DRIVER_GLOBALS,
    collection: WDFCOLLECTION,
) -> WDFOBJECT {
    with_items(collection, "WdfCollectionGetLastItem", |_, items| {
        items.last().map_or(core::ptr::null_mut(), |object| {
            object::handle_ptr(object.handle)
        })
    })
    .unwrap_or(core::ptr::null_mut())
}

pub(crate) const ENTRIES: &[Entry] = &[
    wdf_entry!(
        WdfCollectionCreateTableIndex,
        PFN_WDFCOLLECTIONCREATE,
        wdf_collection_create
    ),
    wdf_entry!(
        WdfCollectionGetCountTableIndex,
        PFN_WDFCOLLECTIONGETCOUNT,
        wdf_collection_get_count
    ),
    wdf_entry!(
        WdfCollectionAddTableIndex,
        PFN_WDFCOLLECTIONADD,
        wdf_collection_add
    ),
    wdf_entry!(
        WdfCollectionRemoveTableIndex,
        PFN_WDFCOLLECTIONREMOVE,
        wdf_collection_remove
    ),
    wdf_entry!(
        WdfCollectionRemoveItemTableIndex,
        PFN_WDFCOLLECTIONREMOVEITEM,
        wdf_collection_remove_item
    ),
    wdf_entry!(
        WdfCollectionGetItemTableIndex,
        PFN_WDFCOLLECTIONGETITEM,
        wdf_collection_get_item
    ),
    wdf_entry!(
        WdfCollectionGetFirstItemTableIndex,
        PFN_WDFCOLLECTIONGETFIRSTITEM,
        wdf_collection_get_first_item
    ),
    wdf_entry!(
        WdfCollectionGetLastItemTableIndex,
        PFN_WDFCOLLECTIONGETLASTITEM,
        wdf_collection_get_last_item
    ),
];

/// Kernel functions of this area, re-exported from `ntddk`.
#[allow(non_snake_case)]
pub mod kernel {}
