//! Page views through the store interface: `store::pageviews` (and `store::visitors` for a
//! new visitor's row) on SQLite, their twins under `store::postgres` on PostgreSQL.

use deadpool_postgres::GenericClient;

use crate::store::handle::client;
use crate::store::pageviews::{self, NewPageView, Swept};
use crate::store::postgres::{PgError, pageviews as pg, visitors as pg_visitors};
use crate::store::visitors::{self, NewVisitor, OwnedVisitor};
use crate::store::{Store, StoreError};

impl Store {
    /// Stores a page view at `at` (a stored time) and marks its visitor seen then, first
    /// making the visitor when the view is their first (`visitor`): all of it or nothing,
    /// one writer job on SQLite, one transaction on PostgreSQL.
    pub async fn record_page_view(
        &self,
        visitor: Option<&NewVisitor<'_>>,
        view: &NewPageView<'_>,
        at: &str,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(db) => {
                let visitor = visitor.map(OwnedVisitor::of);
                let view = OwnedView::of(view);
                let at = at.to_string();
                db.write(move |c| {
                    if let Some(v) = &visitor {
                        visitors::insert(c, &v.borrowed(), &at)?;
                    }
                    pageviews::insert(c, &view.borrowed(), &at)
                })
                .await
            }
            Store::Postgres(pg) => {
                let mut conn = client(pg).await?;
                let tx = conn.transaction().await.map_err(PgError::from)?;
                if let Some(v) = visitor {
                    pg_visitors::insert(&tx, v, at).await?;
                }
                pg::insert(&tx, view, at).await?;
                tx.commit()
                    .await
                    .map_err(crate::store::postgres::at_commit)?;
                Ok(())
            }
        }
    }

    /// Deletes page views from before `cutoff` (a stored time), then the visitors left with
    /// nothing (`pageviews::sweep`): one writer job on SQLite, one transaction on
    /// PostgreSQL.
    pub async fn sweep_pageviews(&self, cutoff: &str) -> Result<Swept, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let cutoff = cutoff.to_string();
                db.write(move |c| pageviews::sweep(c, &cutoff)).await
            }
            Store::Postgres(pg) => {
                let mut conn = client(pg).await?;
                let tx = conn.transaction().await.map_err(PgError::from)?;
                let swept = pg::sweep(&tx, cutoff).await?;
                tx.commit()
                    .await
                    .map_err(crate::store::postgres::at_commit)?;
                Ok(swept)
            }
        }
    }
}

/// A [`NewPageView`] that a writer job can own.
struct OwnedView {
    visitor_id: String,
    url: String,
    title: Option<String>,
    referrer: Option<String>,
}

impl OwnedView {
    fn of(v: &NewPageView<'_>) -> OwnedView {
        OwnedView {
            visitor_id: v.visitor_id.to_string(),
            url: v.url.to_string(),
            title: v.title.map(str::to_string),
            referrer: v.referrer.map(str::to_string),
        }
    }

    fn borrowed(&self) -> NewPageView<'_> {
        NewPageView {
            visitor_id: &self.visitor_id,
            url: &self.url,
            title: self.title.as_deref(),
            referrer: self.referrer.as_deref(),
        }
    }
}
