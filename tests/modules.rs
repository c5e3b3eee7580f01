//! `require` of Lua modules from the configured search path, through the code cache.

mod common;

use std::path::PathBuf;

use common::*;
use luaengine::{Engine, EngineConfig, Phase};

fn site(name: &str, files: &[(&str, &str)]) -> (Engine, PathBuf) {
    let dir = std::env::temp_dir().join(format!("luaengine-mod-{name}-{}", std::process::id()));
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let template = format!("{}/?.lua", dir.display());
    let engine = Engine::new(EngineConfig { workers: 2, package_path: vec![template], ..Default::default() }).unwrap();
    (engine, dir)
}

#[test]
fn modules_load_once_per_worker_and_compile_once_per_engine() {
    let (engine, _) = site(
        "once",
        &[("greet.lua", "loads = (loads or 0) + 1\nlocal M = {}\nfunction M.hello(who) return 'hello ' .. who .. ' ' .. loads end\nreturn M")],
    );
    for _ in 0..4 {
        let outcome = serve(&engine, "/", &[], &[(Phase::Content, "ngx.say(require('greet').hello('you'))")]);
        assert_eq!(outcome.body(), "hello you 1\n");
    }
    assert_eq!(engine.stats().cache.compiled, 2, "the content snippet and the module, once each");
}

#[test]
fn dotted_names_map_to_directories() {
    let (engine, _) = site("dotted", &[("lib/util.lua", "return { twice = function(x) return 2 * x end }")]);
    let outcome = serve(&engine, "/", &[], &[(Phase::Content, "ngx.say(require('lib.util').twice(21))")]);
    assert_eq!(outcome.body(), "42\n");
}

#[test]
fn missing_modules_list_the_paths_tried() {
    let (engine, dir) = site("missing", &[]);
    let outcome = serve(&engine, "/", &[], &[(Phase::Content, "local ok, err = pcall(require, 'nope') ngx.say(err)")]);
    let body = outcome.body();
    assert!(body.contains("module 'nope' not found:"), "{body}");
    assert!(body.contains(&format!("no file '{}/nope.lua'", dir.display())), "{body}");
}

#[test]
fn module_syntax_errors_name_the_file_and_line() {
    let (engine, _) = site("syntax", &[("broken.lua", "local x = 1\nreturn {")]);
    let outcome = serve(&engine, "/", &[], &[(Phase::Content, "require('broken')")]);
    let error = outcome.error();
    assert!(error.message.contains("error loading module 'broken'"), "{error:?}");
    assert!(error.message.contains("broken.lua:2:"), "{error:?}");
}

#[test]
fn names_that_escape_the_search_path_are_refused() {
    let (engine, _) = site("escape", &[]);
    let outcome = serve(
        &engine,
        "/",
        &[],
        &[(Phase::Content, "local ok, err = pcall(require, '../../etc/passwd') ngx.say(err)")],
    );
    assert!(outcome.body().contains("bad module name"), "{}", outcome.body());
}

#[test]
fn package_loaded_and_preload_work_as_in_lua() {
    let (engine, _) = site("preload", &[]);
    let lua = "package.preload.virtual = function(name) return { name = name } end\n\
               ngx.say(require('virtual').name, ' ', tostring(package.loaded.virtual ~= nil))";
    assert_eq!(serve(&engine, "/", &[], &[(Phase::Content, lua)]).body(), "virtual true\n");
}

#[test]
fn module_loops_are_reported() {
    let (engine, _) = site("loop", &[("a.lua", "return require('b')"), ("b.lua", "return require('a')")]);
    let outcome = serve(&engine, "/", &[], &[(Phase::Content, "require('a')")]);
    assert!(outcome.error().message.contains("loop or previous error loading module"), "{:?}", outcome.error);
}
