package luaengine

import (
	"context"
	"testing"
)

// raceEnabled is set under -race, whose sync.Pool drops items at random (so pooled frames and
// exchanges are made again).
var raceEnabled bool

// Lua's answers cost no Go allocation, error pages included, filtered or not.
func TestPipelineAnswersAllocateNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocations are not measurable under -race")
	}
	e := newEngine(t, Config{})
	upper := compile(t, e, "body_filter", `ngx.arg[1] = string.upper(ngx.arg[1])`)
	deny := compile(t, e, "access", `ngx.exit(403)`)
	say := compile(t, e, "content", `ngx.say("hi")`)
	for _, c := range []struct {
		name   string
		phases Phases
		body   string
	}{
		{"error page", Phases{Access: deny}, "403 Forbidden\n"},
		{"filtered error page", Phases{Access: deny, BodyFilter: upper}, "403 FORBIDDEN\n"},
		{"output", Phases{Content: say}, "hi\n"},
		{"filtered output", Phases{Content: say, BodyFilter: upper}, "HI\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := e.NewPipeline(c.phases)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			init := RequestInit{Method: "GET", Path: "/"}
			allocs := testing.AllocsPerRun(100, func() {
				x, err := p.Begin(context.Background(), init)
				if err != nil || !x.Answered() || string(x.AnswerBody()) != c.body {
					t.Fatalf("%v %q", err, x.AnswerBody())
				}
				x.Finish() //nolint:errcheck // no log phase
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per request", allocs)
			}
		})
	}
}
