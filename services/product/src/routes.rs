//! HTTP: create, read and list products, adjust their stock.

use actix_web::{HttpResponse, web};
use diesel_async::AsyncConnection;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use shared::db::PgPool;
use shared::http::openapi::{BodyRefusals, NotFound, Refusals, Routes};
use shared::http::page::PageQuery;
use shared::http::{ApiError, ErrorBody, ValidJson, ValidQuery};
use shared::money;
use utoipa::ToSchema;

use crate::repo::{self, Product};

/// The longest name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// The largest stock a product is created or adjusted to, and the largest single adjustment.
pub const MAX_STOCK: i32 = 1_000_000_000;

pub fn configure(routes: &mut Routes<'_>) {
    routes
        .route(__path_create, create)
        .route(__path_list, list)
        .route(__path_show, show)
        .route(__path_adjust, adjust);
}

/// A new product.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewProduct {
    /// 1 to 200 characters, surrounding blanks removed.
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    #[serde(deserialize_with = "money::deserialize")]
    #[schema(value_type = money::AmountInput)]
    price: Decimal,
    // Wider than the column, so that an out-of-range value is a 422 naming it, not a 400.
    /// The stock it starts with.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    stock: i64,
}

/// A change of stock.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AdjustRequest {
    /// Added to the stock (negative removes); non-zero, at most 10^9 either way.
    #[schema(minimum = -1_000_000_000, maximum = 1_000_000_000)]
    delta: i64,
}

/// A product.
#[derive(Debug, Serialize, ToSchema)]
struct ProductView {
    product_id: i64,
    name: String,
    #[schema(value_type = money::Amount)]
    price: Decimal,
    stock: i32,
}

impl From<Product> for ProductView {
    fn from(product: Product) -> Self {
        Self {
            product_id: product.id,
            name: product.name,
            price: money::normalize(product.price),
            stock: product.stock,
        }
    }
}

/// A page of products, by id.
#[derive(Debug, Serialize, ToSchema)]
struct ProductPage {
    products: Vec<ProductView>,
    page: i64,
    page_size: i64,
    has_more: bool,
}

fn not_found() -> ApiError {
    ApiError::NotFound { what: "product" }
}

/// The name without surrounding blanks, 1..=200 characters.
fn product_name(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(ApiError::validation("name", "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::validation(
            "name",
            format!("at most {MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(name.to_owned())
}

fn initial_stock(raw: i64) -> Result<i32, ApiError> {
    i32::try_from(raw)
        .ok()
        .filter(|stock| (0..=MAX_STOCK).contains(stock))
        .ok_or_else(|| ApiError::validation("stock", format!("must be 0..={MAX_STOCK}")))
}

fn stock_delta(raw: i64) -> Result<i32, ApiError> {
    i32::try_from(raw)
        .ok()
        .filter(|delta| *delta != 0 && delta.unsigned_abs() <= MAX_STOCK.unsigned_abs())
        .ok_or_else(|| {
            ApiError::validation(
                "delta",
                format!("must be non-zero and at most {MAX_STOCK} either way"),
            )
        })
}

/// Create a product.
#[utoipa::path(
    post,
    path = "/products",
    tag = "products",
    request_body = NewProduct,
    responses(
        (status = 201, description = "Created.", body = ProductView),
        BodyRefusals,
    )
)]
async fn create(
    pool: web::Data<PgPool>,
    ValidJson(body): ValidJson<NewProduct>,
) -> Result<HttpResponse, ApiError> {
    let name = product_name(&body.name)?;
    let price = money::validate(body.price)
        .map_err(|err| ApiError::validation("price", err.to_string()))?;
    let stock = initial_stock(body.stock)?;
    let mut conn = pool.get().await?;
    let product = repo::create(&mut conn, &name, price, stock).await?;
    Ok(HttpResponse::Created().json(ProductView::from(product)))
}

/// Read a product.
#[utoipa::path(
    get,
    path = "/products/{id}",
    tag = "products",
    params(("id" = i64, Path, description = "The product's id.")),
    responses(
        (status = 200, description = "The product.", body = ProductView),
        NotFound,
        Refusals,
    )
)]
async fn show(pool: web::Data<PgPool>, path: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let mut conn = pool.get().await?;
    let product = repo::find(&mut conn, path.into_inner())
        .await?
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(ProductView::from(product)))
}

/// List products, by id.
#[utoipa::path(
    get,
    path = "/products",
    tag = "products",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of products.", body = ProductPage),
        Refusals,
    )
)]
async fn list(
    pool: web::Data<PgPool>,
    query: ValidQuery<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = query.into_inner().page()?;
    let mut conn = pool.get().await?;
    let mut rows = repo::list(&mut conn, page.offset(), page.fetch_limit()).await?;
    let has_more = page.trim(&mut rows);
    Ok(HttpResponse::Ok().json(ProductPage {
        products: rows.into_iter().map(ProductView::from).collect(),
        page: page.page,
        page_size: page.page_size,
        has_more,
    }))
}

/// Adjust a product's stock.
///
/// The stock never goes below 0 nor above 10^9: a change past either bound is refused.
// A conditional update, so that concurrent adjustments and reservations can never drive the
// stock below zero; the refusal says which bound was hit.
#[utoipa::path(
    post,
    path = "/products/{id}/stock",
    tag = "products",
    params(("id" = i64, Path, description = "The product's id.")),
    request_body = AdjustRequest,
    responses(
        (status = 200, description = "The product with its new stock.", body = ProductView),
        NotFound,
        (status = 409, description = "`insufficient_stock` or `stock_limit`: the change would \
            cross a bound.", body = ErrorBody),
        BodyRefusals,
    )
)]
async fn adjust(
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    ValidJson(body): ValidJson<AdjustRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let delta = stock_delta(body.delta)?;
    // Only an increase is held to the limit: removing stock is always allowed down to zero.
    let ceiling = if delta > 0 { MAX_STOCK } else { i32::MAX };
    let mut conn = pool.get().await?;
    let product = conn
        .transaction(async |tx| {
            let Some(product) = repo::change_stock(tx, id, delta, ceiling).await? else {
                let current = repo::find(tx, id).await?.ok_or_else(not_found)?;
                let stock = current.stock;
                return Err(if delta < 0 {
                    ApiError::conflict(
                        "insufficient_stock",
                        format!(
                            "product {id} has {stock} in stock, cannot remove {}",
                            -delta
                        ),
                    )
                } else {
                    ApiError::conflict(
                        "stock_limit",
                        format!(
                            "product {id} has {stock} in stock, {delta} more exceeds {MAX_STOCK}"
                        ),
                    )
                });
            };
            repo::record(tx, id, None, repo::ADJUST, delta, product.stock).await?;
            Ok::<_, ApiError>(product)
        })
        .await?;
    Ok(HttpResponse::Ok().json(ProductView::from(product)))
}
