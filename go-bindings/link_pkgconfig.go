//go:build luaengine_pkgconfig

package luaengine

// With `-tags luaengine_pkgconfig` the package links an installed libluaengine found through
// pkg-config (luaengine.pc, installed by `cmake --install`); see README.md.

/*
#cgo pkg-config: --static luaengine
*/
import "C"
