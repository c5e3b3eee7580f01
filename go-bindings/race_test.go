//go:build race

package luaengine

func init() { raceEnabled = true }
