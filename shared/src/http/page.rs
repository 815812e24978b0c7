//! Page-number pagination shared by every list endpoint: `?page=1&page_size=20`.

use serde::{Deserialize, Serialize};

pub const MAX_PAGE_SIZE: i64 = 100;
pub const DEFAULT_PAGE_SIZE: i64 = 20;

/// Query parameters; out-of-range values are an error naming the parameter, not clamped.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The page, from 1.
    #[param(minimum = 1, default = 1)]
    pub page: Option<i64>,
    /// Entries per page.
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub page_size: Option<i64>,
}

/// A validated page.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Page {
    pub page: i64,
    pub page_size: i64,
}

impl PageQuery {
    /// The page, or the name of the parameter out of range.
    pub fn validate(self) -> Result<Page, (&'static str, String)> {
        let page = self.page.unwrap_or(1);
        let page_size = self.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        if page < 1 {
            return Err(("page", "page must be at least 1".into()));
        }
        if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
            return Err((
                "page_size",
                format!("page_size must be 1..={MAX_PAGE_SIZE}"),
            ));
        }
        Ok(Page { page, page_size })
    }
}

impl PageQuery {
    /// The page, or a 422 naming the parameter out of range.
    pub fn page(self) -> Result<Page, super::ApiError> {
        self.validate()
            .map_err(|(field, message)| super::ApiError::validation(field, message))
    }
}

impl Page {
    /// Cuts `rows` (fetched with [`Page::fetch_limit`]) to the page; true if another page follows.
    pub fn trim<T>(&self, rows: &mut Vec<T>) -> bool {
        let size = usize::try_from(self.page_size).unwrap_or(usize::MAX);
        let has_more = rows.len() > size;
        rows.truncate(size);
        has_more
    }

    pub fn offset(&self) -> i64 {
        (self.page - 1).saturating_mul(self.page_size)
    }

    /// One more row than the page holds is fetched to tell whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        self.page_size + 1
    }
}
