package schema

// ValidateBoth returns the fast path's verdict on data and the full
// validator's, for the differential fuzz test.
func ValidateBoth(r *Registry, typ string, version int, data []byte) (fast bool, slow error) {
	v := r.load().byName[typ].versions[version]
	if v.fast == nil {
		panic("no fast path for " + typ)
	}
	var doc any
	if err := decodeJSON(data, &doc); err != nil {
		slow = invalidJSON(typ, version, err)
	} else {
		slow = v.validateValue(typ, doc)
	}
	return v.fast.fastValid(data), slow
}
