// Command server serves a site from a JSON site config with luaengine's Lua phases around
// net/http: go run ./examples/server -config examples/server/site/site.json
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	luaengine "github.com/libluaengine/luaengine/go-bindings"
)

func main() {
	configPath := flag.String("config", "site.json", "the site config (JSON)")
	listen := flag.String("listen", "", "the address to listen on (default: the config's \"listen\")")
	flag.Parse()
	c, err := loadConfig(*configPath)
	if err != nil {
		log.Fatal(err)
	}
	if *listen != "" {
		c.Listen = *listen
	}
	site, err := NewSite(c, func(r luaengine.LogRecord) {
		log.Printf("[%s] %s request %d %s: %s", levelName(r.Level), r.Phase, r.RequestID, r.Location, r.Message)
	})
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Addr: c.Listen, Handler: site, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx) //nolint:errcheck
	}()
	log.Printf("luaengine %s (%s) serving %s on http://%s", luaengine.Version(), luaengine.Backend(), *configPath, c.Listen)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	<-done
	site.Close()
}

func levelName(l luaengine.LogLevel) string {
	names := [...]string{"stderr", "emerg", "alert", "crit", "error", "warn", "notice", "info", "debug"}
	if l >= 0 && int(l) < len(names) {
		return names[l]
	}
	return "?"
}
