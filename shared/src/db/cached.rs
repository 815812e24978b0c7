//! Statements kept prepared that diesel would prepare again every time.
//!
//! diesel keeps a statement prepared per connection only when it can prove the SQL text is
//! fixed, which it never assumes for an `UPDATE`, an upsert or raw SQL. Such a statement then
//! costs two round trips (prepare, then execute), a parse and a plan on the server, and a close.
//! Each saga step runs one or two of them. [`cached`] lets diesel keep them, keyed by their SQL
//! text and parameter types, which is always sound: the same text with the same types is the
//! same statement. Only for statements whose text takes a bounded number of forms (not a
//! multi-row `INSERT` of a variable number of rows): the cache keeps every form for the life of
//! the connection.

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};

/// `query`, kept prepared on each connection after its first use.
pub fn cached<Q>(query: Q) -> Cached<Q> {
    Cached(query)
}

/// See [`cached`].
#[derive(Debug, Clone, Copy)]
pub struct Cached<Q>(Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Cached<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        // No static query id (below), so the cache keys the statement by its SQL text.
        Ok(true)
    }
}

impl<Q> QueryId for Cached<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Cached<Q> {
    type SqlType = Q::SqlType;
}
