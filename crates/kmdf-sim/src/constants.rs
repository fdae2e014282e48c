// Constants of the mirrored wdk-sys surface: the ones this project uses, with wdk-sys's names,
// types and values, plus the WDF function table statics that `call_unsafe_wdf_function_binding!`
// reads.

use crate::types::*;

pub const FALSE: u32 = 0;
pub const TRUE: u32 = 1;
pub const FILE_NON_DIRECTORY_FILE: u32 = 64;
pub const OBJ_KERNEL_HANDLE: u32 = 512;
pub const MAXIMUM_WAIT_OBJECTS: u32 = 64;
pub const THREAD_WAIT_OBJECTS: u32 = 3;
pub const SYNCHRONIZE: u32 = 1048576;
pub const STANDARD_RIGHTS_ALL: u32 = 2031616;
pub const GENERIC_READ: u32 = 2147483648;
pub const GENERIC_WRITE: u32 = 1073741824;
pub const GENERIC_ALL: u32 = 268435456;
pub const FILE_DEVICE_UNKNOWN: u32 = 34;
pub const FILE_DEVICE_SECURE_OPEN: u32 = 256;
pub const IO_NO_INCREMENT: u32 = 0;
pub const PNPNOTIFY_DEVICE_INTERFACE_INCLUDE_EXISTING_INTERFACES: u32 = 1;
pub const METHOD_BUFFERED: u32 = 0;
pub const METHOD_IN_DIRECT: u32 = 1;
pub const METHOD_OUT_DIRECT: u32 = 2;
pub const METHOD_NEITHER: u32 = 3;
pub const FILE_READ_DATA: u32 = 1;
pub const FILE_WRITE_DATA: u32 = 2;
pub const FILE_SHARE_READ: u32 = 1;
pub const FILE_SHARE_WRITE: u32 = 2;
pub const FILE_SHARE_DELETE: u32 = 4;
pub const FILE_ATTRIBUTE_NORMAL: u32 = 128;
pub const FILE_OPEN: u32 = 1;
pub const FILE_ANY_ACCESS: u32 = 0;
pub const FILE_READ_ACCESS: u32 = 1;
pub const FILE_WRITE_ACCESS: u32 = 2;
pub const THREAD_ALL_ACCESS: u32 = 2097151;
pub const PASSIVE_LEVEL: u32 = 0;
pub const APC_LEVEL: u32 = 1;
pub const DISPATCH_LEVEL: u32 = 2;
pub const HIGH_LEVEL: u32 = 15;

pub const STATUS_ABANDONED: NTSTATUS = 128_i32;
pub const STATUS_ABANDONED_WAIT_0: NTSTATUS = 128_i32;
pub const STATUS_ACCESS_DENIED: NTSTATUS = -1_073_741_790_i32;
pub const STATUS_ALERTED: NTSTATUS = 257_i32;
pub const STATUS_BUFFER_OVERFLOW: NTSTATUS = -2_147_483_643_i32;
pub const STATUS_BUFFER_TOO_SMALL: NTSTATUS = -1_073_741_789_i32;
pub const STATUS_CANCELLED: NTSTATUS = -1_073_741_536_i32;
pub const STATUS_DATA_ERROR: NTSTATUS = -1_073_741_762_i32;
pub const STATUS_DELETE_PENDING: NTSTATUS = -1_073_741_738_i32;
pub const STATUS_DEVICE_ALREADY_ATTACHED: NTSTATUS = -1_073_741_768_i32;
pub const STATUS_DEVICE_BUSY: NTSTATUS = -2_147_483_631_i32;
pub const STATUS_DEVICE_DATA_ERROR: NTSTATUS = -1_073_741_668_i32;
pub const STATUS_DEVICE_DOES_NOT_EXIST: NTSTATUS = -1_073_741_632_i32;
pub const STATUS_DEVICE_NOT_CONNECTED: NTSTATUS = -1_073_741_667_i32;
pub const STATUS_DEVICE_NOT_READY: NTSTATUS = -1_073_741_661_i32;
pub const STATUS_DEVICE_REMOVED: NTSTATUS = -1_073_741_130_i32;
pub const STATUS_END_OF_FILE: NTSTATUS = -1_073_741_807_i32;
pub const STATUS_FILE_CLOSED: NTSTATUS = -1_073_741_528_i32;
pub const STATUS_INFO_LENGTH_MISMATCH: NTSTATUS = -1_073_741_820_i32;
pub const STATUS_INSUFFICIENT_RESOURCES: NTSTATUS = -1_073_741_670_i32;
pub const STATUS_INTERNAL_ERROR: NTSTATUS = -1_073_741_595_i32;
pub const STATUS_INVALID_BUFFER_SIZE: NTSTATUS = -1_073_741_306_i32;
pub const STATUS_INTEGER_OVERFLOW: NTSTATUS = -1_073_741_675_i32;
pub const STATUS_WDF_REQUEST_INVALID_STATE: NTSTATUS = -1_071_644_158_i32;
pub const STATUS_INVALID_DEVICE_REQUEST: NTSTATUS = -1_073_741_808_i32;
pub const STATUS_INVALID_DEVICE_STATE: NTSTATUS = -1_073_741_436_i32;
pub const STATUS_INVALID_HANDLE: NTSTATUS = -1_073_741_816_i32;
pub const STATUS_INVALID_PARAMETER: NTSTATUS = -1_073_741_811_i32;
pub const STATUS_INVALID_USER_BUFFER: NTSTATUS = -1_073_741_592_i32;
pub const STATUS_IO_TIMEOUT: NTSTATUS = -1_073_741_643_i32;
pub const STATUS_NOT_FOUND: NTSTATUS = -1_073_741_275_i32;
pub const STATUS_NOT_IMPLEMENTED: NTSTATUS = -1_073_741_822_i32;
pub const STATUS_NOT_SUPPORTED: NTSTATUS = -1_073_741_637_i32;
pub const STATUS_NO_DATA_DETECTED: NTSTATUS = -2_147_483_614_i32;
pub const STATUS_NO_MEMORY: NTSTATUS = -1_073_741_801_i32;
pub const STATUS_NO_MORE_ENTRIES: NTSTATUS = -2_147_483_622_i32;
pub const STATUS_NO_SUCH_DEVICE: NTSTATUS = -1_073_741_810_i32;
pub const STATUS_OBJECT_NAME_NOT_FOUND: NTSTATUS = -1_073_741_772_i32;
pub const STATUS_OBJECT_TYPE_MISMATCH: NTSTATUS = -1_073_741_788_i32;
pub const STATUS_PENDING: NTSTATUS = 259_i32;
pub const STATUS_PNP_DEVICE_CONFIGURATION_PENDING: NTSTATUS = -1_073_740_651_i32;
pub const STATUS_REQUEST_NOT_ACCEPTED: NTSTATUS = -1_073_741_616_i32;
pub const STATUS_SHARING_VIOLATION: NTSTATUS = -1_073_741_757_i32;
pub const STATUS_SUCCESS: NTSTATUS = 0_i32;
pub const STATUS_TIMEOUT: NTSTATUS = 258_i32;
pub const STATUS_UNSUCCESSFUL: NTSTATUS = -1_073_741_823_i32;
pub const STATUS_USER_APC: NTSTATUS = 192_i32;
pub const STATUS_WAIT_0: NTSTATUS = 0_i32;
pub const STATUS_WAIT_1: NTSTATUS = 1_i32;
pub const STATUS_WAIT_63: NTSTATUS = 63_i32;

// KMDF: handle-less and attribute-less arguments (wdk-sys defines these by hand).
pub const WDF_NO_OBJECT_ATTRIBUTES: PWDF_OBJECT_ATTRIBUTES = core::ptr::null_mut();
pub const WDF_NO_EVENT_CALLBACK: PVOID = core::ptr::null_mut();
pub const WDF_NO_HANDLE: PVOID = core::ptr::null_mut();
pub const WDF_NO_CONTEXT: PVOID = core::ptr::null_mut();
pub const WDF_NO_SEND_OPTIONS: PVOID = core::ptr::null_mut();
pub const POOL_FLAG_REQUIRED_START: POOL_FLAGS = 0x0000_0000_0000_0001;
pub const POOL_FLAG_USE_QUOTA: POOL_FLAGS = 0x0000_0000_0000_0001;
pub const POOL_FLAG_UNINITIALIZED: POOL_FLAGS = 0x0000_0000_0000_0002;
pub const POOL_FLAG_SESSION: POOL_FLAGS = 0x0000_0000_0000_0004;
pub const POOL_FLAG_CACHE_ALIGNED: POOL_FLAGS = 0x0000_0000_0000_0008;
pub const POOL_FLAG_RAISE_ON_FAILURE: POOL_FLAGS = 0x0000_0000_0000_0020;
pub const POOL_FLAG_NON_PAGED: POOL_FLAGS = 0x0000_0000_0000_0040;
pub const POOL_FLAG_NON_PAGED_EXECUTE: POOL_FLAGS = 0x0000_0000_0000_0080;
pub const POOL_FLAG_PAGED: POOL_FLAGS = 0x0000_0000_0000_0100;

// The WDF function table, as the loader fills it in for a real driver. wdk-sys declares these as
// `extern` statics; here they point at the simulation's own table.
pub static mut WdfFunctions: *const WDFFUNC = crate::framework::table::TABLE.as_ptr();
pub static mut WdfDriverGlobals: PWDF_DRIVER_GLOBALS =
    &raw mut crate::framework::table::DRIVER_GLOBALS;
pub static mut WdfFunctionCount: ULONG = crate::framework::table::TABLE_LEN as ULONG;
pub const STATUS_OBJECT_NAME_EXISTS: NTSTATUS = 1_073_741_824_i32;
// The kernel's object type of threads (an `extern` static in wdk-sys); only its identity matters.
pub static mut PsThreadType: *mut POBJECT_TYPE = &raw mut crate::framework::thread::THREAD_TYPE;
