module github.com/libluaengine/luaengine/go-bindings/bench

go 1.24

require (
	github.com/libluaengine/luaengine/go-bindings v0.0.0-00010101000000-000000000000
	github.com/yuin/gopher-lua v1.1.2
)

replace github.com/libluaengine/luaengine/go-bindings => ../
