//! The type language of fields, one for the contract and the generated code.
//!
//! A contract field's type and the Rust type the generated crate gives it
//! differ only in the types they name beyond the built-in ones: the
//! contract spells out an enum's values or names a model it does not define
//! ([`FieldType`](crate::contract::FieldType)), the generated code names a
//! struct or enum it declares ([`RustType`](crate::rust::RustType)). So both
//! are a [`Type`] over what their names are, and turning one into the other
//! ([`Type::map_named`]) only says what becomes of a name.

/// A field's type; `N` is what a [`Type::Named`] names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type<N> {
    String,
    Integer,
    Float,
    Bool,
    Uuid,
    DateTime,
    Date,
    /// Arbitrary JSON: `dict`, `Any`, `object`, and models only named by a
    /// Python module.
    Json,
    List(Box<Type<N>>),
    /// An object with string keys and values of the one type.
    Map(Box<Type<N>>),
    /// May be absent (`str | None`, `Optional[str]`).
    Optional(Box<Type<N>>),
    /// A type the language does not know by itself.
    Named(N),
}

impl<N> Type<N> {
    /// The same type with its name, if it has one, replaced by the type
    /// `name` makes of it; the built-in types, lists, maps and optionals stay
    /// as they are. A type names at most one type (a list, map or optional
    /// holds one), so `name` is called at most once.
    pub fn map_named<M>(&self, name: impl FnOnce(&N) -> Type<M>) -> Type<M> {
        match self {
            Type::String => Type::String,
            Type::Integer => Type::Integer,
            Type::Float => Type::Float,
            Type::Bool => Type::Bool,
            Type::Uuid => Type::Uuid,
            Type::DateTime => Type::DateTime,
            Type::Date => Type::Date,
            Type::Json => Type::Json,
            Type::List(inner) => Type::List(Box::new(inner.map_named(name))),
            Type::Map(inner) => Type::Map(Box::new(inner.map_named(name))),
            Type::Optional(inner) => Type::Optional(Box::new(inner.map_named(name))),
            Type::Named(n) => name(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_named_keeps_the_shape_and_replaces_the_name() {
        let ty: Type<&str> = Type::Optional(Box::new(Type::List(Box::new(Type::Named("a")))));
        let mapped = ty.map_named(|n: &&str| Type::Named(n.len()));
        assert_eq!(
            mapped,
            Type::Optional(Box::new(Type::List(Box::new(Type::Named(1)))))
        );
        let json: Type<usize> = Type::Map(Box::new(Type::Named("x"))).map_named(|_| Type::Json);
        assert_eq!(json, Type::Map(Box::new(Type::Json)));
    }
}
