//! Opening and closing modules, and routing PnP/power callbacks through a module tree, in the
//! order DMF uses.
//!
//! | Callback | Order in one tree |
//! |---|---|
//! | open at create, PrepareHardware, D0Entry, notification register | children (forward), then the parent |
//! | ReleaseHardware, D0Exit | the parent, then children (forward) |
//! | SurpriseRemoval, QueryRemove, close at destroy, notification unregister | the parent, then children (reverse) |

use super::node::{ModuleNode, PowerState};
use super::options::{OpenOption, OpenedDuring};
use super::state::ModuleState;
use crate::error::{ConfigError, ModuleError};
use crate::wdf::NtStatus;

/// Opens one module (not its children): `DMF_ModuleOpen`. The module's own references fail
/// while its open callback runs and work from the post-open hook on.
pub fn open(node: &dyn ModuleNode) -> Result<(), NtStatus> {
    let core = node.core();
    if core.state() == ModuleState::Opened {
        return Err(NtStatus::INVALID_DEVICE_STATE);
    }
    core.set_state(ModuleState::Opening);
    if let Err(status) = node.open() {
        core.set_state(ModuleState::Created);
        return Err(status);
    }
    core.set_state(ModuleState::Opened);
    core.set_opened_during(OpenedDuring::Manual);
    core.post_opened();
    Ok(())
}

/// Closes one module (not its children): `DMF_ModuleClose`. Runs at most once per open: calls
/// the pre-close hook, makes new references fail, waits until every reference is released,
/// then runs the module's close callback. Must be called at `PASSIVE_LEVEL`.
pub fn close(node: &dyn ModuleNode) {
    let core = node.core();
    if !core.begin_close() {
        return;
    }
    core.run_pre_close();
    core.references().begin_close();
    node.before_close();
    core.references().end_and_wait();
    core.set_state(ModuleState::Closing);
    node.close();
    core.set_state(ModuleState::Closed);
    core.set_opened_during(OpenedDuring::Invalid);
}

fn open_during(node: &dyn ModuleNode, during: OpenedDuring) -> Result<(), NtStatus> {
    open(node)?;
    node.core().set_opened_during(during);
    Ok(())
}

fn register(node: &dyn ModuleNode) -> Result<(), NtStatus> {
    node.notification_register()?;
    node.core().swap_registered(true);
    Ok(())
}

fn unregister(node: &dyn ModuleNode) {
    if node.core().swap_registered(false) {
        node.notification_unregister();
    }
}

fn children(node: &dyn ModuleNode) -> impl DoubleEndedIterator<Item = &dyn ModuleNode> {
    (0..node.child_count()).filter_map(move |index| node.child(index))
}

/// Checks DMF's rule that a parent may not open earlier than any of its children.
fn check_open_order(node: &dyn ModuleNode) -> Result<(), ConfigError> {
    let parent = node.core().open_option();
    for child in children(node) {
        let option = child.core().open_option();
        if option.is_open() && parent.is_open() && parent < option {
            return Err(ConfigError::ParentOpensBeforeChild);
        }
    }
    Ok(())
}

/// Opens (or registers notifications for) a tree at create: children first, in order, then the
/// parent. A failure closes, in reverse order, whatever this call had opened.
pub fn open_on_create(node: &dyn ModuleNode) -> Result<(), ModuleError> {
    let count = node.child_count();
    for index in 0..count {
        let Some(child) = node.child(index) else {
            continue;
        };
        if let Err(error) = open_on_create(child) {
            for opened in (0..index).rev().filter_map(|i| node.child(i)) {
                close_on_destroy(opened);
            }
            return Err(error);
        }
    }
    let result = check_open_order(node)
        .map_err(ModuleError::from)
        .and_then(|()| {
            match node.core().open_option() {
                OpenOption::OpenCreate => open_during(node, OpenedDuring::Create)?,
                OpenOption::NotifyCreate => register(node)?,
                _ => {}
            }
            Ok(())
        });
    if result.is_err() {
        for child in children(node).rev() {
            close_on_destroy(child);
        }
    }
    result
}

/// Closes (or unregisters) a tree when it is destroyed: the parent first, then its children in
/// reverse order. Idempotent.
pub fn close_on_destroy(node: &dyn ModuleNode) {
    // OPEN_Create modules close here; so does anything else still open (opened manually, or by
    // a PnP callback that never came back down): destroying a module never leaves it running.
    unregister(node);
    close(node);
    for child in children(node).rev() {
        close_on_destroy(child);
    }
}

/// Routes `EvtDevicePrepareHardware`: children first, then the parent (generic open, then the
/// module's own callback). Stops at the first failure.
pub fn prepare_hardware(node: &dyn ModuleNode) -> Result<(), NtStatus> {
    for child in children(node) {
        prepare_hardware(child)?;
    }
    match node.core().open_option() {
        OpenOption::OpenPrepareHardware => open_during(node, OpenedDuring::PrepareHardware)?,
        OpenOption::NotifyPrepareHardware => register(node)?,
        _ => {}
    }
    node.prepare_hardware()
}

/// Routes `EvtDeviceReleaseHardware`: the parent (its own callback, then generic close), then the
/// children in order. Always runs to the end.
pub fn release_hardware(node: &dyn ModuleNode) {
    node.release_hardware();
    match node.core().open_option() {
        OpenOption::OpenPrepareHardware
            if node.core().opened_during() == OpenedDuring::PrepareHardware =>
        {
            close(node);
        }
        OpenOption::NotifyPrepareHardware => unregister(node),
        _ => {}
    }
    for child in children(node) {
        release_hardware(child);
    }
}

/// Routes `EvtDeviceD0Entry`: children first, then the parent. Stops at the first failure.
pub fn d0_entry(node: &dyn ModuleNode, previous: PowerState) -> Result<(), NtStatus> {
    for child in children(node) {
        d0_entry(child, previous)?;
    }
    let core = node.core();
    match core.open_option() {
        OpenOption::OpenD0Entry => open_during(node, OpenedDuring::D0Entry)?,
        OpenOption::NotifyD0Entry => register(node)?,
        OpenOption::OpenD0EntrySystemPowerUp => {
            let closed = core.state() != ModuleState::Opened;
            if previous == PowerState::D3Final || (previous == PowerState::D3 && closed) {
                open_during(node, OpenedDuring::D0EntrySystemPowerUp)?;
            }
        }
        _ => {}
    }
    node.d0_entry(previous)
}

/// Routes `EvtDeviceD0Exit`: the parent (its own callback, then generic close), then children in
/// order.
pub fn d0_exit(node: &dyn ModuleNode, target: PowerState) {
    node.d0_exit(target);
    let core = node.core();
    match core.open_option() {
        OpenOption::OpenD0Entry if core.opened_during() == OpenedDuring::D0Entry => close(node),
        OpenOption::NotifyD0Entry => unregister(node),
        OpenOption::OpenD0EntrySystemPowerUp
            if core.opened_during() == OpenedDuring::D0EntrySystemPowerUp
                && matches!(
                    target,
                    PowerState::D3Final | PowerState::PrepareForHibernation
                ) =>
        {
            close(node);
        }
        _ => {}
    }
    for child in children(node) {
        d0_exit(child, target);
    }
}

/// Routes `EvtDeviceSurpriseRemoval`: the parent, then children in reverse order.
pub fn surprise_removal(node: &dyn ModuleNode) {
    node.surprise_removal();
    for child in children(node).rev() {
        surprise_removal(child);
    }
}

/// Routes `EvtDeviceQueryRemove`: the parent, then children in reverse order; the first failure
/// vetoes.
pub fn query_remove(node: &dyn ModuleNode) -> Result<(), NtStatus> {
    node.query_remove()?;
    for child in children(node).rev() {
        query_remove(child)?;
    }
    Ok(())
}

/// Closes every module of the tree that was opened during one of `moments` (failure cleanup of
/// `PrepareHardware` / D0Entry): the parent, then children in reverse order.
pub fn close_opened_during(node: &dyn ModuleNode, moments: &[OpenedDuring]) {
    if moments.contains(&node.core().opened_during()) {
        close(node);
    }
    for child in children(node).rev() {
        close_opened_during(child, moments);
    }
}
