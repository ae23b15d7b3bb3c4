package association

import (
	"fmt"
	"runtime"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/podid/podid/api/v1alpha1"
)

var testIdentity = Identity{Partition: "aws", Region: "eu-west-1", AccountID: "111122223333", ClusterName: "bench"}

func object(ns, sa, role string, uid types.UID) *v1alpha1.PodIdentityAssociation {
	return &v1alpha1.PodIdentityAssociation{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa, UID: uid, Generation: 1},
		Spec:       v1alpha1.PodIdentityAssociationSpec{ServiceAccount: sa, RoleARN: role},
	}
}

func TestIndexHandler(t *testing.T) {
	ix := NewIndex(testIdentity)
	h := ix.Handler()
	first := object("shop", "billing", "arn:aws:iam::111122223333:role/a", "uid-1")
	h.OnAdd(first, false)
	a, ok := ix.Lookup("shop", "billing")
	if !ok || a.RoleARN != "arn:aws:iam::111122223333:role/a" || a.ID != IDFor("uid-1") || a.ARN != testIdentity.AssociationARN(a.ID) {
		t.Fatalf("after add: %+v, %v", a, ok)
	}

	// Deleted and re-created under the same name while the watch was down:
	// the informer reports an update with a new UID, and the old ID must go.
	second := object("shop", "billing", "arn:aws:iam::111122223333:role/b", "uid-2")
	h.OnUpdate(first, second)
	if _, ok := ix.ByID(IDFor("uid-1")); ok {
		t.Error("the replaced association's ID still resolves")
	}
	if b, ok := ix.ByID(IDFor("uid-2")); !ok || b.RoleARN != "arn:aws:iam::111122223333:role/b" {
		t.Errorf("ByID of the new association: %+v, %v", b, ok)
	}

	h.OnDelete(toolscache.DeletedFinalStateUnknown{Key: "shop/billing", Obj: second})
	if _, ok := ix.Lookup("shop", "billing"); ok || ix.Len() != 0 {
		t.Errorf("after a tombstone delete the index holds %d associations", ix.Len())
	}
	if _, ok := ix.Lookup("shop", "other"); ok {
		t.Error("Lookup found an association that never existed")
	}
}

const benchAssociations = 100_000

func fillIndex(b *testing.B, n int) *Index {
	ix := NewIndex(testIdentity)
	for i := range n {
		ix.Upsert(object(fmt.Sprintf("ns-%d", i%1000), fmt.Sprintf("sa-%d", i), fmt.Sprintf("arn:aws:iam::111122223333:role/role-%d", i), types.UID(fmt.Sprintf("3f1c9a2e-0000-4000-8000-%012d", i))))
	}
	if ix.Len() != n {
		b.Fatalf("index holds %d, want %d", ix.Len(), n)
	}
	return ix
}

func lookupKeys(n int) [][2]string {
	keys := make([][2]string, 1024)
	for i := range keys {
		j := (i * 7919) % n
		keys[i] = [2]string{fmt.Sprintf("ns-%d", j%1000), fmt.Sprintf("sa-%d", j)}
	}
	return keys
}

// BenchmarkIndexLookup measures a (namespace, ServiceAccount) lookup, the
// credential exchange's hot path, at 1,000 to 100,000 associations: the time
// must not grow with the count.
//
//	go test ./internal/association -run '^$' -bench Index -benchmem
func BenchmarkIndexLookup(b *testing.B) {
	for _, n := range []int{1_000, 10_000, benchAssociations} {
		b.Run(fmt.Sprintf("associations=%d", n), func(b *testing.B) {
			ix := fillIndex(b, n)
			keys := lookupKeys(n)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				k := keys[i%len(keys)]
				if _, ok := ix.Lookup(k[0], k[1]); !ok {
					b.Fatal("missing association")
				}
			}
		})
	}
}

// BenchmarkIndexLookupParallel is the lookup at 100,000 associations from
// every core at once.
func BenchmarkIndexLookupParallel(b *testing.B) {
	ix := fillIndex(b, benchAssociations)
	keys := lookupKeys(benchAssociations)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			k := keys[i%len(keys)]
			if _, ok := ix.Lookup(k[0], k[1]); !ok {
				b.Fatal("missing association")
			}
		}
	})
}

// BenchmarkIndexMemory reports the heap the index holds per association at
// 100,000 associations, once the objects it was fed from are gone (what it
// costs on top of the informer's own copy is less: the strings are shared).
func BenchmarkIndexMemory(b *testing.B) {
	for b.Loop() {
		before := heapInUse()
		ix := fillIndex(b, benchAssociations)
		after := heapInUse()
		b.ReportMetric(float64(after-before)/benchAssociations, "bytes/association")
		runtime.KeepAlive(ix)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// A cluster association is in force over the namespace's own for the same
// ServiceAccount; both are found by ID, and removing the cluster one puts
// the namespace's back in force.
func TestIndexClusterAssociationWins(t *testing.T) {
	ix := NewIndex(Identity{Partition: "aws", Region: "eu-west-1", AccountID: "111122223333", ClusterName: "c"})
	own := &v1alpha1.PodIdentityAssociation{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "billing", UID: "own"},
		Spec:       v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "billing", RoleARN: "arn:aws:iam::111122223333:role/tenant"},
	}
	cluster := &v1alpha1.ClusterPodIdentityAssociation{
		ObjectMeta: metav1.ObjectMeta{Name: "shop.billing", UID: "cluster"},
		Spec: v1alpha1.ClusterPodIdentityAssociationSpec{Namespace: "shop",
			PodIdentityAssociationSpec: v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "billing", RoleARN: "arn:aws:iam::111122223333:role/platform"}},
	}
	ix.Upsert(own)
	ix.UpsertCluster(cluster)
	a, ok := ix.Lookup("shop", "billing")
	if !ok || !a.Cluster || a.RoleARN != cluster.Spec.RoleARN || a.ID != IDFor("cluster") {
		t.Fatalf("in force: %+v", a)
	}
	if _, ok := ix.ByID(IDFor("own")); !ok || ix.Len() != 2 {
		t.Fatalf("the namespace's association is not found by ID, or Len = %d", ix.Len())
	}
	ix.DeleteCluster("shop.billing")
	if a, ok := ix.Lookup("shop", "billing"); !ok || a.Cluster || a.RoleARN != own.Spec.RoleARN {
		t.Fatalf("after the cluster one's deletion: %+v", a)
	}
	if _, ok := ix.ByID(IDFor("cluster")); ok || ix.Len() != 1 {
		t.Fatal("the deleted cluster association is still found by ID")
	}
}
