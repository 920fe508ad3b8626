//! Table definitions, read from `infra/template.yaml`: the SAM template is the single definition
//! of every table's key schema, indexes and TTL attribute. `DynamoStore::create_table`, the
//! embedded store and LocalStack's init hook all derive from it.

use std::sync::OnceLock;

use serde_yaml::Value;

use super::StoreError;

/// The SAM template, compiled in.
pub const TEMPLATE: &str = include_str!("../../../infra/template.yaml");

/// Logical id of the pooled main table in the template.
pub const MAIN_TABLE: &str = "MainTable";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDef {
    pub name: String,
    pub hash_key: String,
    pub range_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    /// The template's logical id, e.g. `MainTable`.
    pub logical_id: String,
    pub hash_key: String,
    pub range_key: String,
    pub indexes: Vec<IndexDef>,
    pub ttl_attribute: Option<String>,
}

impl TableDef {
    pub fn index(&self, name: &str) -> Result<&IndexDef, StoreError> {
        self.indexes.iter().find(|i| i.name == name).ok_or_else(|| {
            StoreError::Invalid(format!("table {} has no index {name}", self.logical_id))
        })
    }

    /// The table named `logical_id` in the compiled-in template.
    pub fn from_template(logical_id: &str) -> Result<&'static TableDef, StoreError> {
        tables()?
            .iter()
            .find(|t| t.logical_id == logical_id)
            .ok_or_else(|| {
                StoreError::Invalid(format!("no table {logical_id} in infra/template.yaml"))
            })
    }

    /// The pooled main table.
    pub fn main() -> Result<&'static TableDef, StoreError> {
        Self::from_template(MAIN_TABLE)
    }
}

/// Every `AWS::DynamoDB::Table` of the compiled-in template.
pub fn tables() -> Result<&'static [TableDef], StoreError> {
    static TABLES: OnceLock<Result<Vec<TableDef>, String>> = OnceLock::new();
    TABLES
        .get_or_init(|| parse_tables(TEMPLATE))
        .as_deref()
        .map_err(|e| StoreError::Invalid(format!("infra/template.yaml: {e}")))
}

/// Parses the table resources of a CloudFormation/SAM template.
pub fn parse_tables(template: &str) -> Result<Vec<TableDef>, String> {
    let doc: Value = serde_yaml::from_str(template).map_err(|e| e.to_string())?;
    let resources = doc
        .get("Resources")
        .and_then(Value::as_mapping)
        .ok_or("no Resources mapping")?;
    let mut out = Vec::new();
    for (id, res) in resources {
        if res.get("Type").and_then(Value::as_str) != Some("AWS::DynamoDB::Table") {
            continue;
        }
        let id = id.as_str().ok_or("non-string resource id")?.to_owned();
        let props = res
            .get("Properties")
            .ok_or(format!("{id}: no Properties"))?;
        let (hash_key, range_key) = key_schema(props.get("KeySchema"), &id)?;
        let mut indexes = Vec::new();
        if let Some(gsis) = props
            .get("GlobalSecondaryIndexes")
            .and_then(Value::as_sequence)
        {
            for g in gsis {
                let name = g
                    .get("IndexName")
                    .and_then(Value::as_str)
                    .ok_or(format!("{id}: index without IndexName"))?
                    .to_owned();
                let (h, r) = key_schema(g.get("KeySchema"), &format!("{id}.{name}"))?;
                indexes.push(IndexDef {
                    name,
                    hash_key: h,
                    range_key: r,
                });
            }
        }
        let ttl_attribute = props
            .get("TimeToLiveSpecification")
            .filter(|t| t.get("Enabled").and_then(Value::as_bool) == Some(true))
            .and_then(|t| t.get("AttributeName"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        out.push(TableDef {
            logical_id: id,
            hash_key,
            range_key,
            indexes,
            ttl_attribute,
        });
    }
    Ok(out)
}

fn key_schema(ks: Option<&Value>, what: &str) -> Result<(String, String), String> {
    let ks = ks
        .and_then(Value::as_sequence)
        .ok_or(format!("{what}: no KeySchema"))?;
    let find = |kind: &str| {
        ks.iter()
            .find(|k| k.get("KeyType").and_then(Value::as_str) == Some(kind))
            .and_then(|k| k.get("AttributeName"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(format!(
                "{what}: no {kind} key (tables here always have both)"
            ))
    };
    Ok((find("HASH")?, find("RANGE")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::item::{KEY_ATTRS, TTL_ATTR};

    #[test]
    fn main_table_matches_what_the_code_assumes() {
        let t = TableDef::main().unwrap();
        // Item keeps pk/sk in Key; the template must name them so.
        assert_eq!([t.hash_key.as_str(), t.range_key.as_str()], KEY_ATTRS);
        assert_eq!(t.ttl_attribute.as_deref(), Some(TTL_ATTR));
        let g = t.index("gsi1").unwrap();
        assert_eq!(
            (g.hash_key.as_str(), g.range_key.as_str()),
            ("gsi1pk", "gsi1sk")
        );
    }

    #[test]
    fn parse_reports_what_is_missing() {
        let bad = "Resources:\n  T:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      KeySchema:\n        - AttributeName: pk\n          KeyType: HASH\n";
        let e = parse_tables(bad).unwrap_err();
        assert!(e.contains("RANGE"), "{e}");
        assert!(parse_tables("Resources: {}\n").unwrap().is_empty());
    }
}
