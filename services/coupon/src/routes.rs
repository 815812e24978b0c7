//! HTTP: create and read coupons, issue them to users, read what a user holds.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use shared::db::PgPool;
use shared::http::openapi::{BodyRefusals, NotFound, Refusals, Routes};
use shared::http::page::PageQuery;
use shared::http::{ApiError, ErrorBody, ValidJson, ValidQuery};
use shared::money;
use utoipa::ToSchema;

use crate::repo::{self, Coupon, CouponStatus, DiscountType, NewCoupon, UserCoupon};

/// The longest coupon name, in characters.
pub const MAX_NAME: usize = 100;
/// The most coupons one campaign may issue.
pub const MAX_QUANTITY: i64 = 1_000_000;

pub fn configure(routes: &mut Routes<'_>) {
    routes
        .route(__path_create, create)
        .route(__path_show, show)
        .route(__path_issue, issue)
        .route(__path_show_user_coupon, show_user_coupon)
        .route(__path_owned, owned);
}

/// A new coupon campaign.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CouponRequest {
    /// 1 to 100 characters, surrounding blanks removed.
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    // A string, not an enum, so that an unknown type is a 422 naming the field like every
    // other rule, not a 400 from the decoder.
    #[schema(value_type = DiscountType)]
    discount_type: String,
    /// Greater than zero; a `PERCENT` discount is 1 to 100.
    #[serde(deserialize_with = "money::deserialize")]
    #[schema(value_type = money::AmountInput)]
    discount_value: Decimal,
    /// How many coupons the campaign issues.
    #[schema(minimum = 1, maximum = 1_000_000)]
    total_quantity: i64,
    /// In the future; none = never expires.
    expires_at: Option<DateTime<Utc>>,
}

/// Who receives a coupon.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct IssueRequest {
    #[schema(minimum = 1)]
    user_id: i64,
}

/// A coupon campaign.
#[derive(Debug, Serialize, ToSchema)]
struct CouponView {
    coupon_id: i64,
    name: String,
    discount_type: DiscountType,
    #[schema(value_type = money::Amount)]
    discount_value: Decimal,
    total_quantity: i32,
    issued_quantity: i32,
    expires_at: Option<DateTime<Utc>>,
}

impl From<Coupon> for CouponView {
    fn from(coupon: Coupon) -> Self {
        Self {
            coupon_id: coupon.id,
            name: coupon.name,
            discount_type: coupon.discount_type,
            discount_value: money::normalize(coupon.discount_value),
            total_quantity: coupon.total_quantity,
            issued_quantity: coupon.issued_quantity,
            expires_at: coupon.expires_at,
        }
    }
}

/// A coupon issued to a user.
#[derive(Debug, Serialize, ToSchema)]
struct UserCouponView {
    user_coupon_id: i64,
    coupon_id: i64,
    user_id: i64,
    status: CouponStatus,
    /// The order that used it, while it is used.
    order_id: Option<i64>,
}

impl From<UserCoupon> for UserCouponView {
    fn from(held: UserCoupon) -> Self {
        Self {
            user_coupon_id: held.id,
            coupon_id: held.coupon_id,
            user_id: held.user_id,
            status: held.status,
            order_id: held.order_id,
        }
    }
}

/// A user coupon in its owner's list: with what it is worth.
#[derive(Debug, Serialize, ToSchema)]
struct OwnedView {
    #[serde(flatten)]
    user_coupon: UserCouponView,
    name: String,
    discount_type: DiscountType,
    #[schema(value_type = money::Amount)]
    discount_value: Decimal,
    expires_at: Option<DateTime<Utc>>,
}

/// A page of the coupons a user holds.
#[derive(Debug, Serialize, ToSchema)]
struct OwnedPage {
    user_id: i64,
    coupons: Vec<OwnedView>,
    page: i64,
    page_size: i64,
    has_more: bool,
}

fn user_id(raw: i64) -> Result<i64, ApiError> {
    shared::http::positive_id("user_id", raw)
}

/// The request as a row to insert, or the first field that breaks a rule.
fn new_coupon(body: CouponRequest) -> Result<NewCoupon, ApiError> {
    let name = body.name.trim();
    if name.is_empty() {
        return Err(ApiError::validation("name", "must not be empty"));
    }
    if name.chars().count() > MAX_NAME {
        return Err(ApiError::validation(
            "name",
            format!("at most {MAX_NAME} characters"),
        ));
    }
    let discount_type: DiscountType = body
        .discount_type
        .parse()
        .map_err(|_| ApiError::validation("discount_type", "must be FIXED or PERCENT"))?;
    let discount_value = money::validate(body.discount_value)
        .map_err(|err| ApiError::validation("discount_value", err.to_string()))?;
    if discount_value.is_zero() {
        return Err(ApiError::validation(
            "discount_value",
            "must be greater than zero",
        ));
    }
    if discount_type == DiscountType::Percent
        && !(Decimal::ONE..=Decimal::ONE_HUNDRED).contains(&discount_value)
    {
        return Err(ApiError::validation(
            "discount_value",
            "a percentage must be between 1 and 100",
        ));
    }
    let total_quantity = Some(body.total_quantity)
        .filter(|quantity| (1..=MAX_QUANTITY).contains(quantity))
        .and_then(|quantity| i32::try_from(quantity).ok())
        .ok_or_else(|| {
            ApiError::validation("total_quantity", format!("must be 1..={MAX_QUANTITY}"))
        })?;
    if body.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(ApiError::validation("expires_at", "must be in the future"));
    }
    Ok(NewCoupon {
        name: name.to_owned(),
        discount_type,
        discount_value,
        total_quantity,
        expires_at: body.expires_at,
    })
}

/// Create a coupon campaign.
#[utoipa::path(
    post,
    path = "/coupons",
    tag = "coupons",
    request_body = CouponRequest,
    responses(
        (status = 201, description = "Created.", body = CouponView),
        BodyRefusals,
    )
)]
async fn create(
    pool: web::Data<PgPool>,
    ValidJson(body): ValidJson<CouponRequest>,
) -> Result<HttpResponse, ApiError> {
    let coupon = new_coupon(body)?;
    let mut conn = pool.get().await?;
    let created = repo::create(&mut conn, coupon).await?;
    Ok(HttpResponse::Created().json(CouponView::from(created)))
}

/// Read a coupon campaign.
#[utoipa::path(
    get,
    path = "/coupons/{id}",
    tag = "coupons",
    params(("id" = i64, Path, description = "The coupon's id.")),
    responses(
        (status = 200, description = "The coupon.", body = CouponView),
        NotFound,
        Refusals,
    )
)]
async fn show(pool: web::Data<PgPool>, path: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let mut conn = pool.get().await?;
    let coupon = repo::coupon(&mut conn, path.into_inner())
        .await?
        .ok_or(ApiError::NotFound { what: "coupon" })?;
    Ok(HttpResponse::Ok().json(CouponView::from(coupon)))
}

/// Issue a coupon to a user: first come, first served, one per user.
// One transaction: count it (the conditional update decides who comes first), then hand it
// out. A user who has one already fails on the unique key, which rolls the count back with the
// rest.
#[utoipa::path(
    post,
    path = "/coupons/{id}/issue",
    tag = "coupons",
    params(("id" = i64, Path, description = "The coupon's id.")),
    request_body = IssueRequest,
    responses(
        (status = 201, description = "Issued: the user's coupon.", body = UserCouponView),
        NotFound,
        (status = 409, description = "`already_issued`, `sold_out` or `expired`.", body = ErrorBody),
        BodyRefusals,
    )
)]
async fn issue(
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    ValidJson(body): ValidJson<IssueRequest>,
) -> Result<HttpResponse, ApiError> {
    let coupon_id = path.into_inner();
    let user_id = user_id(body.user_id)?;
    let mut conn = pool.get().await?;
    let issued = conn
        .transaction(async |tx| {
            if repo::take_one(tx, coupon_id).await?.is_none() {
                return Err(refusal(tx, coupon_id, user_id).await?);
            }
            repo::issue_to(tx, coupon_id, user_id)
                .await
                .map_err(already_issued_or)
        })
        .await?;
    Ok(HttpResponse::Created().json(UserCouponView::from(issued)))
}

fn already_issued() -> ApiError {
    ApiError::conflict("already_issued", "this user already holds this coupon")
}

fn already_issued_or(err: DieselError) -> ApiError {
    match &err {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)
            if info.constraint_name() == Some(repo::ONE_PER_USER) =>
        {
            already_issued()
        }
        _ => err.into(),
    }
}

/// Why coupon `coupon_id` could not be counted for `user_id`.
async fn refusal(
    conn: &mut AsyncPgConnection,
    coupon_id: i64,
    user_id: i64,
) -> Result<ApiError, DieselError> {
    let Some(coupon) = repo::coupon(conn, coupon_id).await? else {
        return Ok(ApiError::NotFound { what: "coupon" });
    };
    if repo::holds(conn, coupon_id, user_id).await? {
        return Ok(already_issued());
    }
    // The count only grows: if there is room now there was room then, so the update refused
    // an expired coupon (by the database's clock, whatever this process's says).
    let expired = coupon.issued_quantity < coupon.total_quantity
        || coupon.expires_at.is_some_and(|at| at <= Utc::now());
    Ok(if expired {
        ApiError::conflict("expired", "this coupon has expired")
    } else {
        ApiError::conflict("sold_out", "every coupon of this kind was issued")
    })
}

/// Read a user's coupon.
#[utoipa::path(
    get,
    path = "/user-coupons/{id}",
    tag = "coupons",
    params(("id" = i64, Path, description = "The user coupon's id.")),
    responses(
        (status = 200, description = "The user coupon.", body = UserCouponView),
        NotFound,
        Refusals,
    )
)]
async fn show_user_coupon(
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = pool.get().await?;
    let held = repo::user_coupon(&mut conn, path.into_inner())
        .await?
        .ok_or(ApiError::NotFound {
            what: "user coupon",
        })?;
    Ok(HttpResponse::Ok().json(UserCouponView::from(held)))
}

/// List the coupons a user holds.
#[utoipa::path(
    get,
    path = "/users/{user_id}/coupons",
    tag = "coupons",
    params(
        ("user_id" = i64, Path, minimum = 1, description = "The user's id."),
        PageQuery
    ),
    responses(
        (status = 200, description = "A page of the user's coupons.", body = OwnedPage),
        Refusals,
    )
)]
async fn owned(
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    query: ValidQuery<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let user_id = user_id(path.into_inner())?;
    let page = query.into_inner().page()?;
    let mut conn = pool.get().await?;
    let mut rows = repo::owned(&mut conn, user_id, page.offset(), page.fetch_limit()).await?;
    let has_more = page.trim(&mut rows);
    Ok(HttpResponse::Ok().json(OwnedPage {
        user_id,
        coupons: rows
            .into_iter()
            .map(|(held, coupon)| OwnedView {
                user_coupon: UserCouponView::from(held),
                name: coupon.name,
                discount_type: coupon.discount_type,
                discount_value: money::normalize(coupon.discount_value),
                expires_at: coupon.expires_at,
            })
            .collect(),
        page: page.page,
        page_size: page.page_size,
        has_more,
    }))
}
