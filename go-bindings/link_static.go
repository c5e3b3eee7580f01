//go:build !luaengine_pkgconfig

package luaengine

// By default the package links the static library that `cargo build --release --locked` writes
// into the repository's target/ folder, so programs need no LD_LIBRARY_PATH. The extra
// libraries are what `cargo rustc --print native-static-libs` lists on Linux.

/*
#cgo CFLAGS: -I${SRCDIR}/../include
#cgo LDFLAGS: ${SRCDIR}/../target/release/libluaengine.a -lgcc_s -lutil -lrt -lpthread -lm -ldl
*/
import "C"
