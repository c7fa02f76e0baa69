//! Enums of names a contract declares (states, triggers, guards, workflow
//! steps, a field's allowed values): [`named_enum!`] writes the enum with the
//! contract's spelling of each variant, so generated code lists only the
//! names, and implements [`Named`] for it, so the runtime can look names up.
//!
//! [`named_enum!`]: crate::named_enum!

use std::fmt;

/// An enum of a contract's names, as [`named_enum!`](crate::named_enum!) declares it.
pub trait Named: Copy + Eq + fmt::Display + Send + Sync + 'static {
    /// Every variant, in contract order.
    const ALL: &'static [Self];

    /// The name in the contract.
    fn as_str(self) -> &'static str;

    /// The variant the contract calls `name`.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == name)
    }
}

/// Declares an enum whose variants stand for names in a contract.
///
/// ```
/// onex_runtime::named_enum! {
///     /// Where an order is.
///     pub enum Stage {
///         /// Waiting for payment.
///         AwaitingPayment = "awaiting_payment",
///         Shipped = "shipped",
///     }
/// }
///
/// assert_eq!(Stage::AwaitingPayment.as_str(), "awaiting_payment");
/// assert_eq!(Stage::from_name("shipped"), Some(Stage::Shipped));
/// assert_eq!(Stage::ALL, [Stage::AwaitingPayment, Stage::Shipped]);
/// assert_eq!(serde_json::to_string(&Stage::Shipped).unwrap(), "\"shipped\"");
/// assert_eq!(Stage::Shipped.to_string(), "shipped");
/// ```
///
/// The enum is `Copy`, `Eq`, `Hash` and `Debug`; it serialises as the
/// contract's name (serde), shows as it (`Display`, `AsRef<str>`), and has
/// `ALL` (every variant, in contract order), `as_str` and `from_name`, also
/// as the [`Named`] trait. The
/// crate using it depends on `serde` with the `derive` feature, as generated
/// crates do. Attributes before the enum (documentation, `#[derive(Default)]`
/// with a `#[default]` variant) are kept.
#[macro_export]
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $wire:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize)]
        $vis enum $name {
            $( $(#[$variant_meta])* #[serde(rename = $wire)] $variant, )+
        }

        // Helpers a crate may not use all of.
        #[allow(dead_code)]
        impl $name {
            /// Every variant, in contract order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name in the contract.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $wire, )+
                }
            }

            /// The variant the contract calls `name`.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == name)
            }
        }

        impl $crate::names::Named for $name {
            const ALL: &'static [$name] = $name::ALL;

            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }
        }

        impl ::std::convert::AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::named_enum! {
        /// A test enum.
        #[derive(Default)]
        pub enum Colour {
            #[default]
            Red = "red",
            /// Not quite blue.
            DarkBlue = "dark-blue \"x\"",
        }
    }

    #[test]
    fn names_round_trip_through_serde_and_lookup() {
        use super::Named;
        assert_eq!(
            <Colour as Named>::from_name("dark-blue \"x\""),
            Some(Colour::DarkBlue)
        );
        assert_eq!(<Colour as Named>::as_str(Colour::Red), "red");
        assert_eq!(Colour::default(), Colour::Red);
        assert_eq!(Colour::ALL, [Colour::Red, Colour::DarkBlue]);
        assert_eq!(Colour::DarkBlue.as_str(), "dark-blue \"x\"");
        assert_eq!(Colour::from_name("red"), Some(Colour::Red));
        assert_eq!(Colour::from_name("blue"), None);
        let json = serde_json::to_string(&Colour::DarkBlue).unwrap();
        assert_eq!(json, "\"dark-blue \\\"x\\\"\"");
        assert_eq!(
            serde_json::from_str::<Colour>(&json).unwrap(),
            Colour::DarkBlue
        );
        assert_eq!(format!("{}", Colour::Red), "red");
    }
}
