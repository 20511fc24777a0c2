package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// object is one decoded Kubernetes object.
type object struct {
	src  string // file, or "kustomize build DIR"
	kind string // "apps/v1 StatefulSet"
	name string
	obj  any // *appsv1.StatefulSet, *corev1.Service, ...
}

func (o object) String() string { return fmt.Sprintf("%s %s %q", o.src, o.kind, o.name) }

// kinds are the API versions and kinds the deployment may use, with the
// Go type of each. Anything else is refused: a typo in apiVersion or kind
// would otherwise go unchecked.
var kinds = map[string]func() any{
	"v1 Service":                         func() any { return new(corev1.Service) },
	"v1 Secret":                          func() any { return new(corev1.Secret) },
	"v1 ConfigMap":                       func() any { return new(corev1.ConfigMap) },
	"v1 ServiceAccount":                  func() any { return new(corev1.ServiceAccount) },
	"apps/v1 StatefulSet":                func() any { return new(appsv1.StatefulSet) },
	"policy/v1 PodDisruptionBudget":      func() any { return new(policyv1.PodDisruptionBudget) },
	"networking.k8s.io/v1 NetworkPolicy": func() any { return new(networkingv1.NetworkPolicy) },
}

// splitDocs returns the non-empty YAML documents of a stream.
func splitDocs(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		d, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		var probe any
		if err := yaml.Unmarshal(d, &probe); err != nil {
			return nil, err
		}
		if probe != nil {
			docs = append(docs, d)
		}
	}
}

// decode checks one document against the Go type of its kind: strictly
// (an unknown or misspelled field, a duplicate key, a value of the wrong
// type, an unparsable quantity are errors), then for required fields.
func decode(src string, doc []byte) (object, []string) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return object{}, []string{fmt.Sprintf("%s: not YAML: %v", src, err)}
	}
	kind := tm.APIVersion + " " + tm.Kind
	mk, ok := kinds[kind]
	if !ok {
		known := make([]string, 0, len(kinds))
		for k := range kinds {
			known = append(known, k)
		}
		sort.Strings(known)
		return object{}, []string{fmt.Sprintf("%s: apiVersion/kind %q is not one this check knows (%s)", src, kind, strings.Join(known, ", "))}
	}
	obj := mk()
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return object{}, []string{fmt.Sprintf("%s: %s: %v", src, kind, err)}
	}
	o := object{src: src, kind: kind, obj: obj}
	if meta := objectMeta(obj); meta != nil {
		o.name = meta.Name
	}
	var errs []string
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return o, []string{fmt.Sprintf("%s: %v", src, err)}
	}
	var generic any
	if err := json.Unmarshal(js, &generic); err != nil {
		return o, []string{fmt.Sprintf("%s: %v", src, err)}
	}
	requiredWalk(generic, reflect.TypeOf(obj), "", func(path string) {
		errs = append(errs, fmt.Sprintf("%s: %s: required field %s is missing", o, kind, strings.TrimPrefix(path, ".")))
	})
	return o, errs
}

var jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()

// notRequired lists fields that have neither omitempty nor a pointer type
// yet are optional in the API's OpenAPI schema.
var notRequired = map[string]bool{
	"StatefulSetSpec.serviceName": true, // +optional since Kubernetes 1.37
}

// requiredWalk reports every field the API marks required (in the
// generated schema: a field without omitempty that is not a pointer) and
// that v lacks. Types with their own JSON form (quantities,
// int-or-string, times) are leaves.
func requiredWalk(v any, t reflect.Type, path string, missing func(string)) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v == nil || t.Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if m, ok := v.(map[string]any); ok {
			walkStruct(m, t, path, missing)
		}
	case reflect.Slice:
		if arr, ok := v.([]any); ok {
			for i, e := range arr {
				requiredWalk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), missing)
			}
		}
	case reflect.Map:
		if m, ok := v.(map[string]any); ok {
			for k, e := range m {
				requiredWalk(e, t.Elem(), path+"."+k, missing)
			}
		}
	}
}

func walkStruct(m map[string]any, t reflect.Type, path string, missing func(string)) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			walkStruct(m, ft, path, missing)
			continue
		}
		if name == "" {
			name = f.Name
		}
		val, present := m[name]
		if !present || val == nil {
			optional := strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero") ||
				f.Type.Kind() == reflect.Pointer || notRequired[t.Name()+"."+name]
			if !optional {
				missing(path + "." + name)
			}
			continue
		}
		requiredWalk(val, f.Type, path+"."+name, missing)
	}
}

// loadFile decodes every document of a YAML file.
func loadFile(path string) ([]object, []string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, []string{err.Error()}
	}
	docs, err := splitDocs(data)
	if err != nil {
		return nil, []string{fmt.Sprintf("%s: %v", path, err)}
	}
	if len(docs) == 0 {
		return nil, []string{fmt.Sprintf("%s: no YAML document", path)}
	}
	var objs []object
	var errs []string
	for i, d := range docs {
		src := path
		if len(docs) > 1 {
			src = fmt.Sprintf("%s (document %d)", path, i+1)
		}
		o, e := decode(src, d)
		errs = append(errs, e...)
		if o.obj != nil {
			objs = append(objs, o)
		}
	}
	return objs, errs
}

// kustomization is the part of kustomization.yaml the source check needs.
type kustomization struct {
	Resources []string `json:"resources"`
}

// loadKustomization renders dir as `kubectl apply -k` would (kustomize's
// own library, no network) and decodes the result. The listed resource
// files are also decoded as written, so that a duplicate key or an unknown
// field is reported against the file a person edits.
func loadKustomization(dir string) ([]object, []string) {
	var errs []string
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, []string{err.Error()}
	}
	var k kustomization
	if err := yaml.Unmarshal(raw, &k); err != nil {
		return nil, []string{fmt.Sprintf("%s/kustomization.yaml: %v", dir, err)}
	}
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			_, e := loadFile(p)
			errs = append(errs, e...)
		}
	}
	src, docs, errs := kustomizeBuild(dir, errs)
	var objs []object
	for _, y := range docs {
		o, e := decode(src, y)
		errs = append(errs, e...)
		if o.obj != nil {
			objs = append(objs, o)
		}
	}
	if len(objs) == 0 {
		errs = append(errs, src+": no objects")
	}
	return objs, errs
}

// kustomizeBuild runs kustomize on dir and returns its objects as YAML
// documents, with src naming them in messages; errs gains what went wrong.
func kustomizeBuild(dir string, errs []string) (src string, docs [][]byte, _ []string) {
	src = "kustomize build " + dir
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return src, nil, append(errs, fmt.Sprintf("%s: %v", src, err))
	}
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", src, err))
			continue
		}
		docs = append(docs, y)
	}
	return src, docs, errs
}
