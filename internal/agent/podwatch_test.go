package agent

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakePodsAPI plays the API server's pod list and watch for one node.
type fakePodsAPI struct {
	t       *testing.T
	mu      sync.Mutex
	lists   int
	watches []string // resource versions the watches started from
	// onList returns a list page; onWatch writes a watch's events.
	onList  func(n int, cont string) string
	onWatch func(n int, w http.ResponseWriter)
}

func (f *fakePodsAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if r.URL.Path != "/api/v1/pods" || q.Get("fieldSelector") != "spec.nodeName=node-a" {
		f.t.Errorf("unexpected request %s", r.URL)
		http.NotFound(w, r)
		return
	}
	if !strings.Contains(r.Header.Get("Accept"), "as=PartialObjectMetadata") {
		f.t.Errorf("request %s does not ask for metadata only: Accept %q", r.URL, r.Header.Get("Accept"))
	}
	f.mu.Lock()
	if q.Get("watch") == "true" {
		n := len(f.watches)
		f.watches = append(f.watches, q.Get("resourceVersion"))
		f.mu.Unlock()
		f.onWatch(n, w)
		return
	}
	f.lists++
	n := f.lists
	f.mu.Unlock()
	fmt.Fprint(w, f.onList(n, q.Get("continue")))
}

func item(uid string) string {
	return fmt.Sprintf(`{"metadata":{"name":"p-%s","namespace":"demo","uid":%q,"resourceVersion":"1","managedFields":[{"manager":"kubelet"}]}}`, uid, uid)
}

func TestPodWatchForgetsPodsThatLeaveTheNode(t *testing.T) {
	cache, _, _ := setup(0)
	for _, uid := range []string{"uid-a", "uid-b", "uid-c", "uid-d"} {
		if _, err := cache.Get(t.Context(), Pod{UID: uid}, "t"); err != nil {
			t.Fatal(err)
		}
	}
	secondWatch := make(chan struct{})
	api := &fakePodsAPI{t: t,
		onList: func(n int, cont string) string {
			switch {
			case n == 1: // first page
				return `{"metadata":{"continue":"page2"},"items":[` + item("uid-a") + `]}`
			case n == 2 && cont == "page2":
				// uid-c is not on the node any more (it left while no agent
				// watched), uid-d is.
				return `{"metadata":{"resourceVersion":"10"},"items":[` + item("uid-b") + `,` + item("uid-d") + `]}`
			default: // the relist after the watch expired: uid-d went meanwhile
				return `{"metadata":{"resourceVersion":"20"},"items":[` + item("uid-b") + `]}`
			}
		},
		onWatch: func(n int, w http.ResponseWriter) {
			if n > 0 {
				close(secondWatch)
				return
			}
			fmt.Fprint(w, `{"type":"ADDED","object":{"metadata":{"uid":"uid-e","resourceVersion":"11"}}}`+"\n")
			fmt.Fprint(w, `{"type":"DELETED","object":{"metadata":{"name":"p-uid-a","namespace":"demo","uid":"uid-a","resourceVersion":"12"}}}`+"\n")
			fmt.Fprint(w, `{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"13"}}}`+"\n")
			fmt.Fprint(w, `{"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old resource version"}}`+"\n")
		},
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	a := New(Options{Node: "node-a", Cache: cache, APIServer: &APIServer{Host: srv.URL, Client: srv.Client()}})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); a.watchPods(ctx) }()
	select {
	case <-secondWatch:
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not resume after its resource version expired")
	}
	cancel()
	<-done

	if !a.synced.Load() {
		t.Error("the watch never reported itself synced")
	}
	for uid, want := range map[string]bool{"uid-a": false, "uid-b": true, "uid-c": false, "uid-d": false} {
		cache.mu.Lock()
		_, got := cache.entries[uid]
		cache.mu.Unlock()
		if got != want {
			t.Errorf("%s cached = %v, want %v", uid, got, want)
		}
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.watches) != 2 || api.watches[0] != "10" || api.watches[1] != "20" {
		t.Errorf("watches started from %v, want [10 20]: the first from the list, the next from the relist after 410", api.watches)
	}
}

func TestPodWatchKeepsPodsCachedDuringTheList(t *testing.T) {
	cache, _, clk := setup(0)
	// A pod first served after the list began is newer than the list: keep it.
	since := clk.Now()
	clk.Add(time.Second)
	cache.Get(t.Context(), Pod{UID: "new"}, "t")
	if n := cache.ForgetAllBut(map[string]bool{}, since); n != 0 || cache.Len() != 1 {
		t.Fatalf("forgot %d; %d left", n, cache.Len())
	}
	if n := cache.ForgetAllBut(map[string]bool{}, clk.Now().Add(time.Second)); n != 1 || cache.Len() != 0 {
		t.Fatalf("forgot %d; %d left", n, cache.Len())
	}
}

func TestPodWatchReportsForbiddenWithTheFix(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"kind":"Status","message":"pods is forbidden"}`, http.StatusForbidden)
	}))
	defer srv.Close()
	cache, _, _ := setup(0)
	a := New(Options{Node: "node-a", Cache: cache, APIServer: &APIServer{Host: srv.URL, Client: srv.Client()}})
	_, err := a.relist(t.Context())
	if err == nil || !strings.Contains(err.Error(), "needs list and watch on pods") {
		t.Fatalf("relist error = %v", err)
	}
	if a.synced.Load() {
		t.Fatal("synced after a failed list")
	}
}
