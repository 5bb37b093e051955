//! The SQL of a table checksum: which tables and columns there are, the text of a row, the
//! chunk bounds of a primary key walk, and the aggregate of one chunk.
//!
//! A chunk's checksum is `COUNT(*)`, `BIT_XOR` and `SUM` of the CRC32 of each row's text (XOR
//! alone cancels a row present twice). The row text is pt-table-checksum's: every stored column
//! joined by `CONCAT_WS('#', ...)`, followed by one `ISNULL()` digit per nullable column, since
//! `CONCAT_WS` skips NULLs and would otherwise make `(NULL, 'a')` and `('a', NULL)` equal.
//!
//! Bounds are carried between servers as SQL literals built here from what the walk read:
//! strings as hex in their column's character set (no escaping, no collation surprise),
//! ENUM/SET/BIT by their number (the order of the index), numbers as written, the rest quoted.
//! The same literal text is used on both sides, so the chunks partition the key space the same
//! way on both even where a literal rounds (a float key): each chunk starts exactly where the
//! previous one ended.
//!
//! This module is pure: it builds SQL and reads rows handed to it; it never talks to a server.

use crate::dialect::quote_literal;
use crate::error::{Error, Result};

/// Schemas that never hold user tables.
pub const SYSTEM_SCHEMAS: [&str; 4] = ["mysql", "information_schema", "performance_schema", "sys"];

/// `name` as an identifier: backquoted, inner backquotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Every base table outside the system schemas: rows of (schema, table).
pub fn user_tables_sql() -> String {
    format!(
        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
         WHERE TABLE_TYPE='BASE TABLE' AND TABLE_SCHEMA NOT IN ({}) \
         ORDER BY TABLE_SCHEMA, TABLE_NAME",
        system_schema_list()
    )
}

/// Every column of the user tables, in table and column order: rows of (schema, table, column,
/// DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, COLLATION_NAME, IS_NULLABLE, EXTRA, the
/// column's 1-based place in the primary key or NULL).
pub fn user_columns_sql() -> String {
    format!(
        "SELECT c.TABLE_SCHEMA, c.TABLE_NAME, c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, \
         c.CHARACTER_SET_NAME, c.COLLATION_NAME, c.IS_NULLABLE, c.EXTRA, k.ORDINAL_POSITION \
         FROM information_schema.COLUMNS c \
         LEFT JOIN information_schema.KEY_COLUMN_USAGE k ON k.CONSTRAINT_NAME='PRIMARY' \
           AND k.TABLE_SCHEMA=c.TABLE_SCHEMA AND k.TABLE_NAME=c.TABLE_NAME \
           AND k.COLUMN_NAME=c.COLUMN_NAME \
         WHERE c.TABLE_SCHEMA NOT IN ({}) \
         ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION",
        system_schema_list()
    )
}

fn system_schema_list() -> String {
    SYSTEM_SCHEMAS
        .iter()
        .map(|s| quote_literal(s))
        .collect::<Vec<_>>()
        .join(",")
}

/// One column as `information_schema.COLUMNS` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// `DATA_TYPE`, lower case: `int`, `varchar`, `blob`, ...
    pub data_type: String,
    /// `COLUMN_TYPE`: `int(11) unsigned`, `enum('a','b')`, ...
    pub column_type: String,
    /// `CHARACTER_SET_NAME`: set for character columns only.
    pub charset: Option<String>,
    pub collation: Option<String>,
    pub nullable: bool,
    /// A `VIRTUAL` generated column: computed from the others, not stored, so not compared.
    pub virtual_generated: bool,
}

impl Column {
    fn is_float(&self) -> bool {
        matches!(self.data_type.as_str(), "float" | "double" | "real")
    }

    /// Compared and carried by its number (index order), not its label.
    fn is_numbered(&self) -> bool {
        matches!(self.data_type.as_str(), "enum" | "set" | "bit")
    }

    fn is_numeric(&self) -> bool {
        matches!(
            self.data_type.as_str(),
            "tinyint"
                | "smallint"
                | "mediumint"
                | "int"
                | "integer"
                | "bigint"
                | "decimal"
                | "numeric"
                | "float"
                | "double"
                | "real"
                | "year"
        )
    }

    fn is_binary_string(&self) -> bool {
        self.charset.is_none()
            && matches!(
                self.data_type.as_str(),
                "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob"
            )
    }
}

/// A table's shape: its columns in order and its primary key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableShape {
    pub schema: String,
    pub name: String,
    pub columns: Vec<Column>,
    /// Indexes into `columns`, in key order; empty when the table has no primary key.
    pub primary_key: Vec<usize>,
}

/// A place in a primary key walk: one SQL literal and one display text per key column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bound {
    pub literals: Vec<String>,
    pub display: Vec<String>,
}

impl TableShape {
    /// `schema`.`table`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    pub fn has_primary_key(&self) -> bool {
        !self.primary_key.is_empty()
    }

    /// Whether a column is a float or double (compared by its text form).
    pub fn has_float_column(&self) -> bool {
        self.stored_columns().any(Column::is_float)
    }

    fn stored_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| !c.virtual_generated)
    }

    fn key_columns(&self) -> impl Iterator<Item = &Column> {
        self.primary_key.iter().map(|&i| &self.columns[i])
    }

    /// The text of a row. Character columns are compared as their bytes when the table mixes
    /// collations, where `CONCAT_WS` would otherwise fail with "Illegal mix of collations".
    pub fn row_text_expr(&self) -> String {
        let mut collations: Vec<&str> = self
            .stored_columns()
            .filter_map(|c| c.collation.as_deref())
            .collect();
        collations.sort_unstable();
        collations.dedup();
        let as_bytes = collations.len() > 1;
        let mut parts: Vec<String> = self
            .stored_columns()
            .map(|c| {
                let id = quote_ident(&c.name);
                if as_bytes && c.charset.is_some() {
                    format!("CAST({id} AS BINARY)")
                } else {
                    id
                }
            })
            .collect();
        let nulls: Vec<String> = self
            .stored_columns()
            .filter(|c| c.nullable)
            .map(|c| format!("ISNULL({})", quote_ident(&c.name)))
            .collect();
        if !nulls.is_empty() {
            parts.push(format!("CONCAT({})", nulls.join(",")));
        }
        format!("CONCAT_WS('#',{})", parts.join(","))
    }

    /// The aggregate of the rows in `lower < key <= upper` (a missing bound is open), or of the
    /// whole table for a table without a primary key: one row of (count, bit_xor, sum).
    pub fn chunk_sql(&self, lower: Option<&Bound>, upper: Option<&Bound>) -> String {
        let crc = format!("CRC32({})", self.row_text_expr());
        let mut sql = format!(
            "SELECT COUNT(*), COALESCE(BIT_XOR({crc}),0), COALESCE(SUM({crc}),0) FROM {}",
            self.qualified()
        );
        if self.has_primary_key() {
            sql.push_str(" FORCE INDEX (PRIMARY)");
        }
        let conditions = self.range_conditions(lower, upper);
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql
    }

    /// The key of the `rows`-th row after `lower` in key order (`None`: from the start): each
    /// key column's literal then its display text. No row means fewer than `rows` remain.
    pub fn next_bound_sql(&self, lower: Option<&Bound>, rows: u64) -> String {
        let mut select = Vec::new();
        for c in self.key_columns() {
            let id = quote_ident(&c.name);
            let literal = if c.is_numbered() {
                format!("{id}+0")
            } else if c.charset.is_some() || c.is_binary_string() {
                format!("HEX({id})")
            } else {
                id.clone()
            };
            select.push(literal);
            select.push(id);
        }
        let order: Vec<String> = self.key_columns().map(|c| quote_ident(&c.name)).collect();
        let mut sql = format!(
            "SELECT {} FROM {} FORCE INDEX (PRIMARY)",
            select.join(","),
            self.qualified()
        );
        let conditions = self.range_conditions(lower, None);
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(&format!(
            " ORDER BY {} LIMIT {},1",
            order.join(","),
            rows.max(1) - 1
        ));
        sql
    }

    /// A bound from a row of [`TableShape::next_bound_sql`].
    pub fn bound_from_row(&self, row: &[(String, Option<String>)]) -> Result<Bound> {
        let mut literals = Vec::new();
        let mut display = Vec::new();
        for (i, c) in self.key_columns().enumerate() {
            let raw = row
                .get(2 * i)
                .and_then(|v| v.1.clone())
                .ok_or_else(|| Error::Parse {
                    what: "primary key bound",
                    input: format!("{}.{}", self.qualified(), c.name),
                    reason: "a primary key column is NULL or missing".into(),
                })?;
            let shown = row
                .get(2 * i + 1)
                .and_then(|v| v.1.clone())
                .unwrap_or_default();
            literals.push(literal_for(c, &raw)?);
            display.push(if c.is_binary_string() {
                format!("X'{raw}'")
            } else if c.is_numeric() {
                shown
            } else {
                quote_literal(&shown)
            });
        }
        Ok(Bound { literals, display })
    }

    /// `key > lower` and `key <= upper`, expanded column by column as the range optimizer reads
    /// them: `(a > 1) OR (a = 1 AND b > 2)`.
    fn range_conditions(&self, lower: Option<&Bound>, upper: Option<&Bound>) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(b) = lower {
            out.push(self.compare(b, ">", ">"));
        }
        if let Some(b) = upper {
            out.push(self.compare(b, "<", "<="));
        }
        out
    }

    fn compare(&self, b: &Bound, strict: &str, last: &str) -> String {
        let cols: Vec<String> = self.key_columns().map(|c| quote_ident(&c.name)).collect();
        let mut alternatives = Vec::new();
        for i in 0..cols.len() {
            let mut terms: Vec<String> = (0..i)
                .map(|j| format!("{} = {}", cols[j], b.literals[j]))
                .collect();
            let op = if i + 1 == cols.len() { last } else { strict };
            terms.push(format!("{} {op} {}", cols[i], b.literals[i]));
            alternatives.push(terms.join(" AND "));
        }
        if alternatives.len() == 1 {
            alternatives.remove(0)
        } else {
            format!("(({}))", alternatives.join(") OR ("))
        }
    }

    /// A chunk's range as an operator reads it, e.g. `id > 20000 AND id <= 40000`.
    pub fn describe_range(&self, lower: Option<&Bound>, upper: Option<&Bound>) -> String {
        let cols: Vec<String> = self.key_columns().map(|c| c.name.clone()).collect();
        let key = if cols.len() == 1 {
            cols[0].clone()
        } else {
            format!("({})", cols.join(", "))
        };
        let value = |b: &Bound| {
            if b.display.len() == 1 {
                b.display[0].clone()
            } else {
                format!("({})", b.display.join(", "))
            }
        };
        match (lower, upper) {
            (None, None) => "whole table".into(),
            (Some(l), None) => format!("{key} > {}", value(l)),
            (None, Some(u)) => format!("{key} <= {}", value(u)),
            (Some(l), Some(u)) => format!("{key} > {} AND {key} <= {}", value(l), value(u)),
        }
    }
}

/// The literal of a bound value as read by [`TableShape::next_bound_sql`].
fn literal_for(c: &Column, raw: &str) -> Result<String> {
    let bad = |reason: &str| Error::Parse {
        what: "primary key bound",
        input: raw.to_string(),
        reason: format!("{} ({})", reason, c.column_type),
    };
    if c.charset.is_some() || c.is_binary_string() {
        if !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("not hex"));
        }
        return Ok(match &c.charset {
            // An introducer makes the bytes a string of the column's character set, so the
            // comparison uses the column's collation and the index.
            Some(cs) if cs.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                format!("_{cs} X'{raw}'")
            }
            Some(_) => return Err(bad("unexpected character set name")),
            None => format!("X'{raw}'"),
        });
    }
    if c.is_numbered() || (c.is_numeric() && c.data_type != "year") {
        let ok = !raw.is_empty()
            && raw
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
        if !ok {
            return Err(bad("not a number"));
        }
        return Ok(raw.to_string());
    }
    Ok(quote_literal(raw))
}

/// Build the shapes of every table from the rows of [`user_columns_sql`].
pub fn shapes_from_rows(rows: &[Vec<(String, Option<String>)>]) -> Vec<TableShape> {
    let mut shapes: Vec<TableShape> = Vec::new();
    let mut keys: Vec<Vec<(u32, usize)>> = Vec::new();
    for row in rows {
        let text = |i: usize| row.get(i).and_then(|v| v.1.clone());
        let (Some(schema), Some(table), Some(name)) = (text(0), text(1), text(2)) else {
            continue;
        };
        let same = shapes
            .last()
            .is_some_and(|s| s.schema == schema && s.name == table);
        if !same {
            shapes.push(TableShape {
                schema,
                name: table,
                columns: Vec::new(),
                primary_key: Vec::new(),
            });
            keys.push(Vec::new());
        }
        let shape = shapes.last_mut().expect("pushed above");
        let extra = text(8).unwrap_or_default().to_ascii_uppercase();
        shape.columns.push(Column {
            name,
            data_type: text(3).unwrap_or_default().to_ascii_lowercase(),
            column_type: text(4).unwrap_or_default(),
            charset: text(5),
            collation: text(6),
            nullable: text(7).is_some_and(|v| v.eq_ignore_ascii_case("YES")),
            virtual_generated: extra.contains("VIRTUAL"),
        });
        if let Some(place) = text(9).and_then(|v| v.parse::<u32>().ok()) {
            let index = shape.columns.len() - 1;
            keys.last_mut()
                .expect("pushed with the shape")
                .push((place, index));
        }
    }
    for (shape, mut key) in shapes.iter_mut().zip(keys) {
        key.sort_unstable();
        shape.primary_key = key.into_iter().map(|(_, i)| i).collect();
    }
    shapes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, data_type: &str, charset: Option<&str>, nullable: bool) -> Column {
        Column {
            name: name.into(),
            data_type: data_type.into(),
            column_type: data_type.into(),
            charset: charset.map(String::from),
            collation: charset.map(|c| format!("{c}_general_ci")),
            nullable,
            virtual_generated: false,
        }
    }

    fn shape(pk: Vec<usize>) -> TableShape {
        TableShape {
            schema: "app".into(),
            name: "t".into(),
            columns: vec![
                col("a", "int", None, false),
                col("b", "varchar", Some("utf8mb4"), false),
                col("c", "blob", None, true),
            ],
            primary_key: pk,
        }
    }

    #[test]
    fn row_text_marks_nulls() {
        assert_eq!(
            shape(vec![0]).row_text_expr(),
            "CONCAT_WS('#',`a`,`b`,`c`,CONCAT(ISNULL(`c`)))"
        );
    }

    #[test]
    fn composite_bounds_expand_column_by_column() {
        let s = shape(vec![0, 1]);
        let b = s
            .bound_from_row(&[
                ("l".into(), Some("5".into())),
                ("d".into(), Some("5".into())),
                ("l".into(), Some("6162".into())),
                ("d".into(), Some("ab".into())),
            ])
            .unwrap();
        assert_eq!(
            b.literals,
            vec!["5".to_string(), "_utf8mb4 X'6162'".to_string()]
        );
        let sql = s.chunk_sql(Some(&b), None);
        assert!(
            sql.ends_with("WHERE ((`a` > 5) OR (`a` = 5 AND `b` > _utf8mb4 X'6162'))"),
            "{sql}"
        );
        assert_eq!(
            s.describe_range(Some(&b), Some(&b)),
            "(a, b) > (5, 'ab') AND (a, b) <= (5, 'ab')"
        );
    }

    #[test]
    fn odd_bound_values_are_refused() {
        let s = shape(vec![0]);
        let row = [
            ("l".to_string(), Some("1; DROP".to_string())),
            ("d".to_string(), Some("1".to_string())),
        ];
        assert!(s.bound_from_row(&row).is_err());
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
    }
}
