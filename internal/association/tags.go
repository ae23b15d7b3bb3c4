package association

import "maps"

// EditTags is tags with add set and the keys in remove taken away, as a new
// map; nil when none are left, since an association holds no empty tag map.
// The CLI's update and the EKS API's tagging operations both edit tags so.
func EditTags(tags, add map[string]string, remove []string) map[string]string {
	out := maps.Clone(tags)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, add)
	for _, k := range remove {
		delete(out, k)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
