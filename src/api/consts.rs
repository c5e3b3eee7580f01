//! `ngx.OK` and friends, log levels, HTTP methods and statuses, `ngx.null`.

use mlua::{LightUserData, Table};

use crate::log::LogLevel;

pub(crate) const NGX_OK: i64 = 0;
pub(crate) const NGX_ERROR: i64 = -1;

const CODES: [(&str, i64); 5] = [("OK", NGX_OK), ("ERROR", NGX_ERROR), ("AGAIN", -2), ("DONE", -4), ("DECLINED", -5)];

/// lua-nginx-module's method constants (bit flags, as `ngx.location.capture` takes them).
pub(crate) const METHODS: [(&str, i64); 15] = [
    ("HTTP_GET", 0x0002),
    ("HTTP_HEAD", 0x0004),
    ("HTTP_POST", 0x0008),
    ("HTTP_PUT", 0x0010),
    ("HTTP_DELETE", 0x0020),
    ("HTTP_MKCOL", 0x0040),
    ("HTTP_COPY", 0x0080),
    ("HTTP_MOVE", 0x0100),
    ("HTTP_OPTIONS", 0x0200),
    ("HTTP_PROPFIND", 0x0400),
    ("HTTP_PROPPATCH", 0x0800),
    ("HTTP_LOCK", 0x1000),
    ("HTTP_UNLOCK", 0x2000),
    ("HTTP_PATCH", 0x4000),
    ("HTTP_TRACE", 0x8000),
];

/// lua-nginx-module's status constants (ngx_http_lua_consts.c), README order.
const STATUSES: [(&str, i64); 37] = [
    ("HTTP_CONTINUE", 100),
    ("HTTP_SWITCHING_PROTOCOLS", 101),
    ("HTTP_OK", 200),
    ("HTTP_CREATED", 201),
    ("HTTP_ACCEPTED", 202),
    ("HTTP_NO_CONTENT", 204),
    ("HTTP_PARTIAL_CONTENT", 206),
    ("HTTP_SPECIAL_RESPONSE", 300),
    ("HTTP_MOVED_PERMANENTLY", 301),
    ("HTTP_MOVED_TEMPORARILY", 302),
    ("HTTP_FOUND", 302),
    ("HTTP_SEE_OTHER", 303),
    ("HTTP_NOT_MODIFIED", 304),
    ("HTTP_TEMPORARY_REDIRECT", 307),
    ("HTTP_PERMANENT_REDIRECT", 308),
    ("HTTP_BAD_REQUEST", 400),
    ("HTTP_UNAUTHORIZED", 401),
    ("HTTP_PAYMENT_REQUIRED", 402),
    ("HTTP_FORBIDDEN", 403),
    ("HTTP_NOT_FOUND", 404),
    ("HTTP_NOT_ALLOWED", 405),
    ("HTTP_NOT_ACCEPTABLE", 406),
    ("HTTP_REQUEST_TIMEOUT", 408),
    ("HTTP_CONFLICT", 409),
    ("HTTP_GONE", 410),
    ("HTTP_UPGRADE_REQUIRED", 426),
    ("HTTP_TOO_MANY_REQUESTS", 429),
    ("HTTP_CLOSE", 444),
    ("HTTP_ILLEGAL", 451),
    ("HTTP_INTERNAL_SERVER_ERROR", 500),
    ("HTTP_NOT_IMPLEMENTED", 501),
    ("HTTP_METHOD_NOT_IMPLEMENTED", 501),
    ("HTTP_BAD_GATEWAY", 502),
    ("HTTP_SERVICE_UNAVAILABLE", 503),
    ("HTTP_GATEWAY_TIMEOUT", 504),
    ("HTTP_VERSION_NOT_SUPPORTED", 505),
    ("HTTP_INSUFFICIENT_STORAGE", 507),
];

pub(crate) fn register(ngx: &Table) -> mlua::Result<()> {
    for (name, value) in CODES.iter().chain(&METHODS).chain(&STATUSES) {
        ngx.set(*name, *value)?;
    }
    for level in LogLevel::ALL {
        ngx.set(level.name().replace("error", "err").to_uppercase(), level as i64)?;
    }
    ngx.set("null", LightUserData(std::ptr::null_mut()))?;
    Ok(())
}
