//! ModemManager's D-Bus names, the zbus proxies for the few methods the exporter calls, and
//! error classification.
//!
//! Properties are read as untyped maps (`GetManagedObjects`, `Properties.GetAll`) and decoded
//! by [`crate::decode`], so a property of an unexpected type on some daemon version becomes an
//! absent series instead of a failed call.

use zbus::{Connection, OwnedVariant};

/// The daemon's well-known bus name.
pub const SERVICE: &str = "org.freedesktop.ModemManager1";
/// The manager object (ObjectManager of every modem).
pub const MANAGER_PATH: &str = "/org/freedesktop/ModemManager1";

/// Interface names.
pub mod iface {
    pub const MANAGER: &str = "org.freedesktop.ModemManager1";
    pub const MODEM: &str = "org.freedesktop.ModemManager1.Modem";
    pub const MODEM_3GPP: &str = "org.freedesktop.ModemManager1.Modem.Modem3gpp";
    pub const SIGNAL: &str = "org.freedesktop.ModemManager1.Modem.Signal";
    pub const LOCATION: &str = "org.freedesktop.ModemManager1.Modem.Location";
    pub const MESSAGING: &str = "org.freedesktop.ModemManager1.Modem.Messaging";
    pub const TIME: &str = "org.freedesktop.ModemManager1.Modem.Time";
    pub const BEARER: &str = "org.freedesktop.ModemManager1.Bearer";
    pub const SIM: &str = "org.freedesktop.ModemManager1.Sim";
}

/// `org.freedesktop.ModemManager1.Modem.Signal`: only the method the exporter calls.
#[zbus::proxy(
    interface = "org.freedesktop.ModemManager1.Modem.Signal",
    default_service = "org.freedesktop.ModemManager1"
)]
pub trait Signal {
    /// Polls extended signal values every `rate` seconds (0 disables); needs polkit
    /// `org.freedesktop.ModemManager1.Device.Control`.
    fn setup(&self, rate: u32) -> zbus::Result<()>;
}

/// `org.freedesktop.ModemManager1.Modem.Location`: only the method the exporter calls.
#[zbus::proxy(
    interface = "org.freedesktop.ModemManager1.Modem.Location",
    default_service = "org.freedesktop.ModemManager1"
)]
pub trait Location {
    /// The current location per enabled source; needs polkit
    /// `org.freedesktop.ModemManager1.Location`.
    fn get_location(&self) -> zbus::Result<std::collections::HashMap<u32, OwnedVariant>>;
}

/// Connects to the bus at `address`, or to the system bus when `None`.
pub async fn connect(address: Option<&str>) -> zbus::Result<Connection> {
    let builder = match address {
        Some(address) => zbus::connection::Builder::address(address),
        None => zbus::connection::Builder::system(),
    };
    builder.build().await
}

/// The D-Bus error name of a method error reply, if `err` is one.
pub fn error_name(err: &zbus::Error) -> Option<String> {
    match err {
        zbus::Error::MethodError(name, _, _) => Some(name.as_str().to_owned()),
        zbus::Error::FDO(fdo) => Some(zbus::DBusError::name(fdo.as_ref()).as_str().to_owned()),
        _ => None,
    }
}

/// Whether ModemManager refused the call for lack of polkit authorization.
pub fn is_unauthorized(err: &zbus::Error) -> bool {
    error_name(err).is_some_and(|n| {
        n == "org.freedesktop.ModemManager1.Error.Core.Unauthorized"
            || n == "org.freedesktop.DBus.Error.AccessDenied"
            || n == "org.freedesktop.DBus.Error.AuthFailed"
    })
}

/// Whether the object or interface no longer exists (a modem or bearer removed between two
/// calls of one scrape), which is normal rather than a failure.
pub fn is_gone(err: &zbus::Error) -> bool {
    error_name(err).is_some_and(|n| {
        n == "org.freedesktop.DBus.Error.UnknownObject"
            || n == "org.freedesktop.DBus.Error.UnknownInterface"
            || n == "org.freedesktop.DBus.Error.UnknownMethod"
    })
}

/// Whether ModemManager is not running (its name has no owner).
pub fn is_service_unknown(err: &zbus::Error) -> bool {
    error_name(err).is_some_and(|n| {
        n == "org.freedesktop.DBus.Error.ServiceUnknown"
            || n == "org.freedesktop.DBus.Error.NameHasNoOwner"
    })
}
