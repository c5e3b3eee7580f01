//! `ngx.get_phase()`: the running phase's name; "init" when no request runs, as
//! lua-nginx-module answers when it finds no request.

use mlua::{Lua, Table};

use super::CurrentRequest;
use crate::phase::Phase;

pub(crate) fn register(lua: &Lua, ngx: &Table, current: &CurrentRequest) -> mlua::Result<()> {
    let current = current.clone();
    let get_phase =
        move |_: &Lua, ()| Ok(current.peek(|request| request.and_then(|r| r.phase).map_or("init", Phase::name)));
    ngx.set("get_phase", lua.create_function(get_phase)?)
}
