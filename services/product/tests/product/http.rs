//! Products over HTTP: creation, reading, listing, stock adjustments, and every refusal.

use super::*;

#[tokio::test]
async fn products_are_created_read_and_listed_by_page() {
    let s = start().await;
    let products = ProductClient::new(&s.app);
    let (status, created) = s
        .app
        .post(
            "/products",
            &json!({"name": "Laptop", "price": 1200, "stock": 7}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["product_id"].as_i64().unwrap();
    let expected = json!({"product_id": id, "name": "Laptop", "price": "1200.00", "stock": 7});
    assert_eq!(created, expected);
    assert_eq!(s.app.get(&format!("/products/{id}")).await, (200, expected));
    let second = products.create_product("Mouse", "19.9", 0).await;
    let third = products.create_product(&"é".repeat(200), "0", 1).await;
    assert_eq!(
        s.app.get(&format!("/products/{second}")).await.1["price"],
        "19.90"
    );

    let (status, page) = s.app.get("/products?page=1&page_size=2").await;
    assert_eq!(status, 200, "{page}");
    let ids: Vec<i64> = page["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["product_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![id, second]);
    assert_eq!(
        (&page["page"], &page["page_size"], &page["has_more"]),
        (&json!(1), &json!(2), &json!(true))
    );
    let (_, page) = s.app.get("/products?page=2&page_size=2").await;
    assert_eq!(page["products"].as_array().unwrap().len(), 1);
    assert_eq!(page["products"][0]["product_id"], third);
    assert_eq!(page["has_more"], false);
    let (_, page) = s.app.get("/products").await;
    assert_eq!(page["products"].as_array().unwrap().len(), 3);
    assert_eq!(page["page_size"], 20);
    s.app.stop().await;
}

#[tokio::test]
async fn stock_is_adjusted_but_never_below_zero() {
    let s = start().await;
    let products = ProductClient::new(&s.app);
    let id = products.create_product("Chair", "45.00", 5).await;
    let path = format!("/products/{id}/stock");
    let (status, body) = s.app.post(&path, &json!({"delta": 10})).await;
    assert_eq!((status, &body["stock"]), (200, &json!(15)), "{body}");
    assert_eq!(body["price"], "45.00");
    let (status, body) = s.app.post(&path, &json!({"delta": -12})).await;
    assert_eq!((status, &body["stock"]), (200, &json!(3)), "{body}");

    let (status, body) = s.app.post(&path, &json!({"delta": -4})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_stock");
    assert_eq!(
        products.stock(id).await,
        3,
        "a refused adjustment changes nothing"
    );
    let (status, body) = s.app.post(&path, &json!({"delta": -3})).await;
    assert_eq!((status, &body["stock"]), (200, &json!(0)), "{body}");

    let full = products
        .create_product("Screw", "0.01", 1_000_000_000)
        .await;
    let (status, body) = s
        .app
        .post(&format!("/products/{full}/stock"), &json!({"delta": 1}))
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("stock_limit"))
    );
    assert_eq!(products.stock(full).await, 1_000_000_000);

    let recorded = format!("kind = 'ADJUST' AND order_id IS NULL AND product_id = {id}");
    assert_eq!(
        movements(&s.db, &recorded).await,
        3,
        "one row per adjustment"
    );
    assert_eq!(
        movements(
            &s.db,
            &format!("{recorded} AND delta = -12 AND stock_after = 3")
        )
        .await,
        1
    );
    assert_eq!(
        movements(&s.db, "true").await,
        3,
        "refusals are not recorded"
    );
    s.app.stop().await;
}

fn assert_refused(what: &str, (status, body): (u16, Value), expected: u16, field: &str) {
    assert_eq!(status, expected, "{what}: {body}");
    let error = &body["error"];
    if expected == 422 {
        assert_eq!(error["code"], "validation_failed", "{what}: {body}");
        assert_eq!(error["field"], field, "{what}: {body}");
    } else {
        let named = error["field"].as_str().unwrap_or_default().contains(field)
            || error["message"]
                .as_str()
                .unwrap_or_default()
                .contains(field);
        assert!(named, "{what}: {body}");
    }
}

/// Product bodies that break one rule each, with the status and the field named.
fn bad_products() -> Vec<(Value, u16, &'static str)> {
    let long = "x".repeat(201);
    vec![
        (json!({"name": "", "price": "1", "stock": 1}), 422, "name"),
        (
            json!({"name": "   ", "price": "1", "stock": 1}),
            422,
            "name",
        ),
        (json!({"name": long, "price": "1", "stock": 1}), 422, "name"),
        (
            json!({"name": "a", "price": "-0.01", "stock": 1}),
            422,
            "price",
        ),
        (
            json!({"name": "a", "price": "1.001", "stock": 1}),
            422,
            "price",
        ),
        (
            json!({"name": "a", "price": "1000000000000", "stock": 1}),
            422,
            "price",
        ),
        (
            json!({"name": "a", "price": "cheap", "stock": 1}),
            400,
            "price",
        ),
        (
            json!({"name": "a", "price": "1", "stock": -1}),
            422,
            "stock",
        ),
        (
            json!({"name": "a", "price": "1", "stock": 1_000_000_001}),
            422,
            "stock",
        ),
        (
            json!({"name": "a", "price": "1", "stock": "5"}),
            400,
            "stock",
        ),
        (json!({"name": "a", "price": "1"}), 400, "stock"),
        (
            json!({"name": "a", "price": "1", "stock": 1, "x": 1}),
            400,
            "x",
        ),
    ]
}

/// Every bad adjustment of product `id`'s stock is refused naming `delta`.
async fn refuses_bad_adjustments(app: &TestApp, id: i64) {
    let path = format!("/products/{id}/stock");
    for (body, status) in [
        (json!({"delta": 0}), 422),
        (json!({"delta": 1_000_000_001}), 422),
        (json!({"delta": -1_000_000_001}), 422),
        (json!({"delta": 1.5}), 400),
        (json!({}), 400),
    ] {
        let got = app.post(&path, &body).await;
        assert_refused(&body.to_string(), got, status, "delta");
    }
}

/// Malformed JSON, unknown and malformed ids, and bad pages.
async fn refuses_bad_paths_and_bodies(app: &TestApp) {
    let response = app
        .client
        .post(app.url("/products"))
        .header("content-type", "application/json")
        .body(r#"{"name": "a", "price""#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400, "malformed JSON");

    let (status, body) = app.get("/products/999").await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));
    let (status, _) = app.post("/products/999/stock", &json!({"delta": 1})).await;
    assert_eq!(status, 404);
    assert_eq!(app.get("/products/abc").await.0, 400);
    assert_eq!(
        app.post("/products/abc/stock", &json!({"delta": 1}))
            .await
            .0,
        400
    );
    assert_refused("page 0", app.get("/products?page=0").await, 422, "page");
    assert_refused(
        "page_size 101",
        app.get("/products?page_size=101").await,
        422,
        "page_size",
    );
}

#[tokio::test]
async fn bad_requests_are_refused_naming_the_field() {
    let s = start().await;
    let products = ProductClient::new(&s.app);
    let id = products.create_product("Lamp", "10.00", 2).await;
    for (body, status, field) in bad_products() {
        let got = s.app.post("/products", &body).await;
        assert_refused(&body.to_string(), got, status, field);
    }
    refuses_bad_adjustments(&s.app, id).await;
    refuses_bad_paths_and_bodies(&s.app).await;

    let (_, page) = s.app.get("/products").await;
    assert_eq!(
        page["products"].as_array().unwrap().len(),
        1,
        "nothing created"
    );
    assert_eq!(products.stock(id).await, 2, "nothing adjusted");
    s.app.stop().await;
}

#[tokio::test]
async fn a_nul_in_any_text_field_is_a_422_naming_it_and_unknown_paths_answer_json() {
    let s = start().await;
    let products = ProductClient::new(&s.app);
    let body = json!({"name": "a\u{0}b", "price": 1, "stock": 1});
    s.app.assert_refused("/products", &body, "name").await;
    let body = json!({"name": "ok", "price": "1\u{0}", "stock": 1});
    s.app.assert_refused("/products", &body, "price").await;
    let id = products.create_product("Lamp", "5", 1).await;
    s.app
        .assert_refused(
            &format!("/products/{id}/stock"),
            &json!({"delta": 1, "\u{0}": 1}),
            "\\u0000",
        )
        .await;
    s.app
        .assert_routing_errors_are_json(&[
            ("GET", "/nope"),
            ("GET", "/products/"),
            ("POST", "/products//stock"),
            ("DELETE", "/products"),
        ])
        .await;
    s.app.stop().await;
}
