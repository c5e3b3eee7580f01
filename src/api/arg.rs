//! `ngx.arg` in body_filter: `ngx.arg[1]` is the body chunk, `ngx.arg[2]` the eof flag; both
//! can be written (a table of strings for the chunk, as ngx.print takes; nil or "" drops it).

use mlua::{Lua, Table, Value};

use super::resp::append_output;
use super::{reply, CurrentRequest};
use crate::phase::{Phase, Phases};

const BODY_FILTER: Phases = Phases::of(&[Phase::BodyFilter]);

pub(crate) fn register(lua: &Lua, current: &CurrentRequest, impl_table: &Table) -> mlua::Result<()> {
    let slot = current.clone();
    impl_table.set(
        "arg_get",
        lua.create_function(move |lua, (_, index): (Value, Value)| {
            let value = slot.peek(|request| {
                let chunk = &request?.chunk;
                (request?.phase == Some(Phase::BodyFilter)).then_some(())?;
                match index {
                    Value::Integer(1) => Some(lua.create_string(&chunk.data).map(Value::String)),
                    Value::Integer(2) => Some(Ok(Value::Boolean(chunk.eof))),
                    _ => None,
                }
            });
            value.transpose()
        })?,
    )?;
    let slot = current.clone();
    impl_table.set(
        "arg_set",
        lua.create_function(move |lua, (_, index, value): (Value, Value, Value)| {
            reply(
                lua,
                slot.try_with("ngx.arg", BODY_FILTER, |request| {
                    let chunk = &mut request.chunk;
                    match index {
                        Value::Integer(1) => {
                            let mut data = Vec::new();
                            if !value.is_nil() {
                                append_output(&mut data, &value, 0)
                                    .map_err(|reason| format!("bad argument #1 to 'ngx.arg' (body chunk: {reason})"))?;
                            }
                            chunk.data = data;
                        }
                        Value::Integer(2) => chunk.eof = !matches!(value, Value::Nil | Value::Boolean(false)),
                        _ => return Err("attempt to write to ngx.arg with an index other than 1 or 2".to_string()),
                    }
                    Ok(Value::Nil)
                }),
            )
        })?,
    )
}
