//! The API contract, generated from the code: every route is registered through [`Routes`],
//! which takes the handler together with its `#[utoipa::path]` description (the `__path_…`
//! type the attribute generates) and mounts it at the path and method that description names.
//! A service's OpenAPI document is made by the same registration, so it lists exactly the
//! routes the service answers. Each service serves it at `GET /openapi.json`; `sagactl gateway
//! config` merges the public ones for the gateway.

use std::collections::BTreeMap;

use actix_web::http::Method;
use actix_web::{FromRequest, Handler, HttpResponse, Responder, web};
use utoipa::openapi::path::{HttpMethod, Paths};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::SecurityScheme;
use utoipa::openapi::{
    Components, ContentBuilder, InfoBuilder, LicenseBuilder, OpenApi, OpenApiBuilder, Ref, RefOr,
};
use utoipa::{PartialSchema, ToSchema};

use super::error::{ErrorBody, ErrorDetail};

/// The path of every service's document.
pub const PATH: &str = "/openapi.json";

/// A service's routes as they are registered: mounted on an app (when there is one) and
/// described for the OpenAPI document.
pub struct Routes<'a> {
    cfg: Option<&'a mut web::ServiceConfig>,
    /// One resource per path, with its methods, so a method the path does not take is a 405
    /// naming those it does, not a 404.
    resources: BTreeMap<String, (actix_web::Resource, Vec<Method>)>,
    paths: Paths,
    schemas: Vec<(String, RefOr<Schema>)>,
    security: Vec<(String, SecurityScheme)>,
}

impl std::fmt::Debug for Routes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("paths", &self.resources.keys())
            .finish()
    }
}

impl<'a> Routes<'a> {
    /// Routes mounted on `cfg` by [`Routes::mount`].
    pub fn new(cfg: &'a mut web::ServiceConfig) -> Self {
        Self::with(Some(cfg))
    }

    fn with(cfg: Option<&'a mut web::ServiceConfig>) -> Self {
        Self {
            cfg,
            resources: BTreeMap::new(),
            paths: Paths::new(),
            schemas: Vec::new(),
            security: Vec::new(),
        }
    }

    /// App data for the handlers (nothing when only the document is being made).
    pub fn app_data<U: 'static>(&mut self, data: U) -> &mut Self {
        if let Some(cfg) = self.cfg.as_deref_mut() {
            cfg.app_data(data);
        }
        self
    }

    /// Declares a security scheme the routes' `security(...)` name.
    pub fn security_scheme(&mut self, name: &str, scheme: SecurityScheme) -> &mut Self {
        self.security.push((name.to_owned(), scheme));
        self
    }

    /// Mounts `handler` where its description `_doc` (its `__path_…` type) says.
    pub fn route<P, F, Args>(&mut self, _doc: P, handler: F) -> &mut Self
    where
        P: utoipa::Path + utoipa::__dev::SchemaReferences,
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let path = P::path();
        for method in P::methods() {
            let (resource, mut methods) = self
                .resources
                .remove(&path)
                .unwrap_or_else(|| (web::resource(path.as_str()), Vec::new()));
            let route = web::method(actix_method(&method)).to(handler.clone());
            methods.push(actix_method(&method));
            self.resources
                .insert(path.clone(), (resource.route(route), methods));
            self.paths
                .add_path_operation(path.as_str(), vec![method], P::operation());
        }
        P::schemas(&mut self.schemas);
        self
    }

    /// Mounts the routes on the app; returns the document's paths and components.
    fn mount(self) -> (Paths, Components) {
        if let Some(cfg) = self.cfg {
            for (resource, methods) in fixed_paths_first(self.resources) {
                cfg.service(resource.default_service(method_not_allowed(&methods)));
            }
        }
        let mut components = Components::new();
        components.schemas.extend(self.schemas);
        components.security_schemes.extend(self.security);
        (self.paths, components)
    }
}

/// The resources in the order to mount them: paths without a `{parameter}` first. Actix gives
/// a request to the first mounted resource whose pattern matches, and `/admin/dlq/{event_id}`
/// matches `/admin/dlq/summary` too: mounted first, it would take the summary for an event id.
fn fixed_paths_first<R>(resources: BTreeMap<String, R>) -> impl Iterator<Item = R> {
    let (fixed, templated): (Vec<_>, Vec<_>) = resources
        .into_iter()
        .partition(|(path, _)| !path.contains('{'));
    fixed
        .into_iter()
        .chain(templated)
        .map(|(_, resource)| resource)
}

/// Registers `routes` on `cfg`.
pub fn mount<F>(cfg: &mut web::ServiceConfig, routes: F)
where
    F: FnOnce(&mut Routes<'_>),
{
    let mut registered = Routes::new(cfg);
    routes(&mut registered);
    registered.mount();
}

/// A 405 naming the methods the path takes (the JSON body is added by
/// [`super::fallback::json_errors`], like every other routing error's).
fn method_not_allowed(methods: &[Method]) -> actix_web::Route {
    let allow = methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    web::to(move || {
        let allow = allow.clone();
        async move {
            HttpResponse::MethodNotAllowed()
                .insert_header((actix_web::http::header::ALLOW, allow))
                .finish()
        }
    })
}

fn actix_method(method: &HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Trace => Method::TRACE,
    }
}

/// `service`'s OpenAPI 3.1 document, from the same registration that mounts its routes.
pub fn document<F>(service: &str, routes: F) -> OpenApi
where
    F: FnOnce(&mut Routes<'_>),
{
    let mut registered = Routes::with(None);
    routes(&mut registered);
    let (mut paths, mut components) = registered.mount();
    name_operations(service, &mut paths);
    with_error_schemas(&mut components);
    let info = InfoBuilder::new()
        .title(format!("{service} service"))
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(format!(
            "The {service} service of the order saga. Every error is the JSON object \
             `{{\"error\":{{\"code\",\"message\",\"field\"}}}}`; `field` names the request \
             field at fault when there is one."
        )))
        .license(Some(
            LicenseBuilder::new()
                .name("MIT OR Apache-2.0")
                .identifier(Some("MIT OR Apache-2.0"))
                .build(),
        ))
        .build();
    OpenApiBuilder::new()
        .info(info)
        .paths(paths)
        .components(Some(components))
        .build()
}

/// Mounts `GET /openapi.json`, serving `document` (serialized once, at start-up).
pub fn serve(cfg: &mut web::ServiceConfig, document: web::Bytes) {
    cfg.route(
        PATH,
        web::get().to(move || {
            let body = document.clone();
            async move {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(body)
            }
        }),
    );
}

/// Operation ids `{service}_{handler}`: unique across the services, so their documents merge.
fn name_operations(service: &str, paths: &mut Paths) {
    for item in paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
        {
            if let Some(id) = &operation.operation_id {
                operation.operation_id = Some(format!("{service}_{id}"));
            }
        }
    }
}

fn with_error_schemas(components: &mut Components) {
    components
        .schemas
        .insert(ErrorBody::name().into_owned(), ErrorBody::schema());
    components
        .schemas
        .insert(ErrorDetail::name().into_owned(), ErrorDetail::schema());
}

/// A response whose body is the error object.
pub fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                .build(),
        )
        .build()
}

/// Declares a set of error responses for `#[utoipa::path(responses(...))]`: a unit struct whose
/// responses all carry the error object.
#[macro_export]
macro_rules! error_responses {
    ($(#[$meta:meta])* $vis:vis $name:ident { $($status:literal => $description:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug)]
        $vis struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                std::collections::BTreeMap::from([
                    $((
                        $status.to_string(),
                        utoipa::openapi::RefOr::T($crate::http::openapi::error_response($description)),
                    )),+
                ])
            }
        }
    };
}

error_responses! {
    /// What any route may answer: a path or query parameter that does not parse (400), a value
    /// that breaks a rule (422), the database out of reach (503).
    pub Refusals {
        400 => "A path or query parameter could not be read; `field` names it.",
        422 => "A value breaks a rule; `field` names it.",
        503 => "The service is temporarily unavailable: retry later.",
    }
}

error_responses! {
    /// What a route taking a JSON body may answer besides [`Refusals`].
    pub BodyRefusals {
        400 => "The body is not the JSON this route takes; `field` names the field at fault.",
        413 => "The body is too large.",
        415 => "The body is not `application/json`.",
        422 => "A value breaks a rule; `field` names it.",
        503 => "The service is temporarily unavailable: retry later.",
    }
}

error_responses! {
    /// 404.
    pub NotFound {
        404 => "No such resource.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_path_is_mounted_before_a_parameter_that_would_match_it() {
        let resources = BTreeMap::from(
            [
                "/admin/dlq/{event_id}",
                "/admin/dlq/summary",
                "/a/{x}",
                "/admin/dlq",
            ]
            .map(|path| (path.to_owned(), path)),
        );
        assert_eq!(
            fixed_paths_first(resources).collect::<Vec<_>>(),
            [
                "/admin/dlq",
                "/admin/dlq/summary",
                "/a/{x}",
                "/admin/dlq/{event_id}"
            ]
        );
    }
}
