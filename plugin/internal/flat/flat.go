// Package flat tells whether a type holds pointers, for the tests of the
// records a full table keeps one of per route (plugin/gate's entries,
// plugin/gobgp's record, plugin/fib's records, the simulated ASIC's
// mirror): a pointer-free type in a map or array is never
// scanned by the collector, and a pointer slipped into one puts a million
// of them back on every mark.
package flat

import "reflect"

// HasPointers says whether values of typ hold a pointer the collector must
// follow.
func HasPointers(typ reflect.Type) bool {
	switch typ.Kind() {
	case reflect.Struct:
		for f := range typ.Fields() {
			if HasPointers(f.Type) {
				return true
			}
		}
		return false
	case reflect.Array:
		return typ.Len() > 0 && HasPointers(typ.Elem())
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return false
	default:
		return true
	}
}
