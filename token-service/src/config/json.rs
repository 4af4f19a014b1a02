//! Reading a model from a JSON object (the admin API's bodies) by its own schema: the members
//! its schema lists, `null` as absent, and the member that is wrong named by its path.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{ConfigError, invalid};

/// A model the admin API reads from JSON and describes in its OpenAPI document, by the model's
/// own serde attributes and schema ([`ClientSettings`](super::ClientSettings),
/// [`ApiSettings`](super::ApiSettings)).
pub trait JsonSettings: DeserializeOwned + JsonSchema {
    /// Reads the settings from a JSON object (`null` members count as absent), naming the
    /// member that is unknown or of the wrong type (`grants[1]`); the rest is checked by the
    /// model's `build_…`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] with the member's path (`""` when the value is no object).
    fn from_json(value: Value) -> Result<Self, ConfigError> {
        read(value)
    }

    /// The JSON Schema of the settings, as the admin API's OpenAPI document shows it.
    #[must_use]
    fn json_schema() -> Value {
        schema::<Self>()
    }
}

/// Reads `T` from a JSON object, naming the member that is unknown or of the wrong type
/// (`grants[1]`); `""` when the value is no object.
///
/// # Errors
///
/// [`ConfigError::Invalid`] with the member's path.
fn read<T: DeserializeOwned + JsonSchema>(value: Value) -> Result<T, ConfigError> {
    let Value::Object(mut members) = value else {
        return Err(invalid("", "must be an object"));
    };
    members.retain(|_, value| !value.is_null());
    // The schema's members: fields skipped there (the file's secrets) are refused here.
    let known = member_names::<T>();
    if let Some(unknown) = members.keys().find(|name| !known.contains(name)) {
        return Err(invalid(
            unknown.clone(),
            format!("unknown member; expected one of {}", known.join(", ")),
        ));
    }
    serde_path_to_error::deserialize(Value::Object(members)).map_err(|error| {
        let field = error.path().to_string();
        invalid(field, error.into_inner().to_string())
    })
}

/// `T`'s JSON Schema, as the admin API's OpenAPI document shows it: inline, without
/// `$schema`, and open to the members answers add (`source`, `created_at`).
fn schema<T: JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12()
        .with(|settings| settings.inline_subschemas = true)
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
        object.remove("additionalProperties");
    }
    schema
}

fn member_names<T: JsonSchema>() -> Vec<String> {
    schema::<T>()
        .get("properties")
        .and_then(Value::as_object)
        .map(|properties| properties.keys().cloned().collect())
        .unwrap_or_default()
}
