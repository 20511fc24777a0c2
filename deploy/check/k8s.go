package main

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// checker holds the objects of a deployment and collects what is wrong
// with them.
type checker struct {
	objs  []object // what kubectl apply -k would create
	extra []object // templates: checked, not deployed (a Secret to create by hand)
	errs  []string
	notes []string
}

func (c *checker) errf(o object, format string, args ...any) {
	c.errs = append(c.errs, o.String()+": "+fmt.Sprintf(format, args...))
}

func (c *checker) fieldErrs(o object, list field.ErrorList) {
	for _, e := range list {
		c.errf(o, "%s", e.Error())
	}
}

// workload is a pod template of the deployment.
type workload struct {
	o        object
	labels   map[string]string
	spec     *corev1.PodSpec
	replicas int32
}

func (c *checker) workloads() []workload {
	var out []workload
	for _, o := range c.objs {
		if s, ok := o.obj.(*appsv1.StatefulSet); ok {
			r := int32(1)
			if s.Spec.Replicas != nil {
				r = *s.Spec.Replicas
			}
			out = append(out, workload{o: o, labels: s.Spec.Template.Labels, spec: &s.Spec.Template.Spec, replicas: r})
		}
	}
	return out
}

// selected returns the workloads whose pods a selector picks.
func (c *checker) selected(sel labels.Selector) []workload {
	var out []workload
	for _, w := range c.workloads() {
		if sel.Matches(labels.Set(w.labels)) {
			out = append(out, w)
		}
	}
	return out
}

func (c *checker) service(name string) *corev1.Service {
	for _, o := range c.objs {
		if s, ok := o.obj.(*corev1.Service); ok && s.Name == name {
			return s
		}
	}
	return nil
}

// secret finds a Secret among the deployed objects, else among the
// templates (then it must be created by hand before the pods can start).
func (c *checker) secret(name string) (s *corev1.Secret, src string, deployed bool) {
	for i, list := range [][]object{c.objs, c.extra} {
		for _, o := range list {
			if s, ok := o.obj.(*corev1.Secret); ok && s.Name == name {
				return s, o.src, i == 0
			}
		}
	}
	return nil, "", false
}

func (c *checker) checkAll() {
	seen := map[string]object{}
	for _, o := range c.objs {
		key := o.kind + "/" + o.name
		if prev, dup := seen[key]; dup {
			c.errf(o, "defined twice (also %s)", prev.src)
		}
		seen[key] = o
	}
	for _, list := range [][]object{c.objs, c.extra} {
		for _, o := range list {
			c.checkObject(o)
		}
	}
}

func (c *checker) checkObject(o object) {
	nameRule := apivalidation.NameIsDNSSubdomain
	if _, ok := o.obj.(*corev1.Service); ok {
		// A Service name is a DNS label of its own (<service>.<ns>.svc).
		nameRule = apivalidation.NameIsDNS1035Label
	}
	if meta := objectMeta(o.obj); meta != nil {
		c.fieldErrs(o, apivalidation.ValidateObjectMeta(meta, false, nameRule, field.NewPath("metadata")))
	}
	switch v := o.obj.(type) {
	case *appsv1.StatefulSet:
		c.checkStatefulSet(o, v)
	case *corev1.Service:
		c.checkService(o, v)
	case *policyv1.PodDisruptionBudget:
		c.checkPDB(o, v)
	case *networkingv1.NetworkPolicy:
		c.checkNetworkPolicy(o, v)
	case *corev1.Secret:
		for k := range v.StringData {
			for _, msg := range validation.IsConfigMapKey(k) {
				c.errf(o, "stringData key %q: %s", k, msg)
			}
		}
		for k := range v.Data {
			for _, msg := range validation.IsConfigMapKey(k) {
				c.errf(o, "data key %q: %s", k, msg)
			}
		}
	}
}

// objectMeta returns the metadata of a decoded object, nil for a type
// without any.
func objectMeta(obj any) *metav1.ObjectMeta {
	if a, ok := obj.(metav1.ObjectMetaAccessor); ok {
		if m, ok := a.GetObjectMeta().(*metav1.ObjectMeta); ok {
			return m
		}
	}
	return nil
}

// selector validates a label selector and converts it.
func (c *checker) selector(o object, s *metav1.LabelSelector, where string, allowEmpty bool) labels.Selector {
	if s == nil {
		c.errf(o, "%s: no selector", where)
		return labels.Nothing()
	}
	c.fieldErrs(o, metav1validation.ValidateLabelSelector(s, metav1validation.LabelSelectorValidationOptions{}, field.NewPath(where)))
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		c.errf(o, "%s: %v", where, err)
		return labels.Nothing()
	}
	if sel.Empty() && !allowEmpty {
		c.errf(o, "%s selects every pod of the namespace", where)
	}
	return sel
}

func (c *checker) checkStatefulSet(o object, s *appsv1.StatefulSet) {
	sel := c.selector(o, s.Spec.Selector, "spec.selector", false)
	if !sel.Matches(labels.Set(s.Spec.Template.Labels)) {
		c.errf(o, "spec.selector does not match spec.template.metadata.labels (the API refuses this)")
	}
	c.fieldErrs(o, metav1validation.ValidateLabels(s.Spec.Template.Labels, field.NewPath("spec.template.metadata.labels")))
	if s.Spec.Replicas != nil && *s.Spec.Replicas < 0 {
		c.errf(o, "spec.replicas is negative")
	}
	// Pod names are <name>-<ordinal> and serve as host names.
	if msgs := validation.IsDNS1123Label(s.Name + "-999"); len(msgs) > 0 {
		c.errf(o, "pod names %s-N are not valid host names: %s", s.Name, strings.Join(msgs, "; "))
	}
	switch s.Spec.PodManagementPolicy {
	case "", appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement:
	default:
		c.errf(o, "spec.podManagementPolicy %q: want OrderedReady or Parallel", s.Spec.PodManagementPolicy)
	}
	switch s.Spec.UpdateStrategy.Type {
	case "", appsv1.RollingUpdateStatefulSetStrategyType, appsv1.OnDeleteStatefulSetStrategyType:
	default:
		c.errf(o, "spec.updateStrategy.type %q: want RollingUpdate or OnDelete", s.Spec.UpdateStrategy.Type)
	}
	if p := s.Spec.PersistentVolumeClaimRetentionPolicy; p != nil {
		for where, v := range map[string]appsv1.PersistentVolumeClaimRetentionPolicyType{"whenDeleted": p.WhenDeleted, "whenScaled": p.WhenScaled} {
			if v != "" && v != appsv1.RetainPersistentVolumeClaimRetentionPolicyType && v != appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
				c.errf(o, "spec.persistentVolumeClaimRetentionPolicy.%s %q: want Retain or Delete", where, v)
			}
		}
	}
	if s.Spec.ServiceName == "" {
		c.errf(o, "spec.serviceName is empty: the pods get no stable DNS names")
	} else if svc := c.service(s.Spec.ServiceName); svc == nil {
		c.errf(o, "spec.serviceName %q: no such Service in the deployment", s.Spec.ServiceName)
	} else {
		if svc.Spec.ClusterIP != corev1.ClusterIPNone {
			c.errf(o, "spec.serviceName %q is not a headless Service (clusterIP: None): pods get no DNS names", s.Spec.ServiceName)
		}
		if svc.Spec.Selector == nil || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(s.Spec.Template.Labels)) {
			c.errf(o, "spec.serviceName %q does not select this StatefulSet's pods", s.Spec.ServiceName)
		}
	}
	claims := map[string]bool{}
	for i, t := range s.Spec.VolumeClaimTemplates {
		where := fmt.Sprintf("spec.volumeClaimTemplates[%d]", i)
		for _, msg := range validation.IsDNS1123Label(t.Name) {
			c.errf(o, "%s.metadata.name %q: %s", where, t.Name, msg)
		}
		if claims[t.Name] {
			c.errf(o, "%s: name %q used twice", where, t.Name)
		}
		claims[t.Name] = true
		if len(t.Spec.AccessModes) == 0 {
			c.errf(o, "%s: no accessModes", where)
		}
		if q, ok := t.Spec.Resources.Requests[corev1.ResourceStorage]; !ok || q.Sign() <= 0 {
			c.errf(o, "%s: no positive resources.requests.storage", where)
		}
	}
	c.checkPod(o, "spec.template.spec", &s.Spec.Template.Spec, claims)
}

var fieldRefPaths = regexp.MustCompile(`^(metadata\.(name|namespace|uid|labels\['[^']+'\]|annotations\['[^']+'\])|spec\.(nodeName|serviceAccountName)|status\.(hostIP|hostIPs|podIP|podIPs))$`)

func (c *checker) checkPod(o object, where string, p *corev1.PodSpec, claims map[string]bool) {
	vols := map[string]corev1.Volume{}
	for i, v := range p.Volumes {
		vw := fmt.Sprintf("%s.volumes[%d]", where, i)
		for _, msg := range validation.IsDNS1123Label(v.Name) {
			c.errf(o, "%s.name %q: %s", vw, v.Name, msg)
		}
		if _, dup := vols[v.Name]; dup || claims[v.Name] {
			c.errf(o, "%s: volume name %q used twice", vw, v.Name)
		}
		vols[v.Name] = v
		if v.Secret != nil {
			c.checkSecretVolume(o, vw, v.Secret)
		}
	}
	if len(p.Containers) == 0 {
		c.errf(o, "%s: no containers", where)
	}
	names := map[string]bool{}
	for i := range p.Containers {
		ct := &p.Containers[i]
		cw := fmt.Sprintf("%s.containers[%d]", where, i)
		for _, msg := range validation.IsDNS1123Label(ct.Name) {
			c.errf(o, "%s.name %q: %s", cw, ct.Name, msg)
		}
		if names[ct.Name] {
			c.errf(o, "%s: container name %q used twice", cw, ct.Name)
		}
		names[ct.Name] = true
		if ct.Image == "" {
			c.errf(o, "%s: no image", cw)
		}
		c.checkContainer(o, cw, p, ct, vols, claims)
	}
	if p.SecurityContext != nil && p.SecurityContext.RunAsUser != nil && *p.SecurityContext.RunAsUser == 0 &&
		p.SecurityContext.RunAsNonRoot != nil && *p.SecurityContext.RunAsNonRoot {
		c.errf(o, "%s.securityContext: runAsUser 0 with runAsNonRoot: the pod never starts", where)
	}
}

func (c *checker) checkSecretVolume(o object, where string, sv *corev1.SecretVolumeSource) {
	if sv.DefaultMode != nil && (*sv.DefaultMode < 0 || *sv.DefaultMode > 0o777) {
		c.errf(o, "%s.secret.defaultMode %d is not a file mode (0000-0777)", where, *sv.DefaultMode)
	}
	s, src, deployed := c.secret(sv.SecretName)
	if s == nil {
		if sv.Optional == nil || !*sv.Optional {
			c.errf(o, "%s: Secret %q is neither in the deployment nor in a template: pods would wait for it forever", where, sv.SecretName)
		}
		return
	}
	if !deployed {
		c.note("Secret %q must be created by hand before the pods can start (its template %s was checked)", sv.SecretName, src)
	}
	for j, it := range sv.Items {
		_, inData := s.Data[it.Key]
		_, inString := s.StringData[it.Key]
		if !inData && !inString {
			c.errf(o, "%s.secret.items[%d]: key %q is not in Secret %q", where, j, it.Key, sv.SecretName)
		}
		if it.Path == "" || path.IsAbs(it.Path) || strings.Contains(it.Path, "..") {
			c.errf(o, "%s.secret.items[%d].path %q must be a relative path without ..", where, j, it.Path)
		}
	}
}

func (c *checker) note(format string, args ...any) {
	n := fmt.Sprintf(format, args...)
	if !slices.Contains(c.notes, n) {
		c.notes = append(c.notes, n)
	}
}

// expand resolves $(VAR) references as the kubelet does in command, args
// and env values: $$ is a literal $, and a reference to an undefined
// variable is left as written (which is never what was meant).
func expand(s string, lookup func(string) (string, bool)) (string, []string) {
	var b strings.Builder
	var undefined []string
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String(), undefined
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				undefined = append(undefined, name)
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), undefined
}

// checkContainer checks what the API server or the kubelet would refuse
// or get wrong in one container of pod spec p.
func (c *checker) checkContainer(o object, cw string, p *corev1.PodSpec, ct *corev1.Container, vols map[string]corev1.Volume, claims map[string]bool) {
	c.checkEnvAndArgs(o, cw, ct)
	portNames, portNums := c.checkContainerPorts(o, cw, ct)
	c.checkContainerProbes(o, cw, ct, portNames, portNums)
	if ct.Lifecycle != nil && ct.Lifecycle.PreStop != nil && ct.Lifecycle.PreStop.Sleep != nil {
		grace := int64(30)
		if p.TerminationGracePeriodSeconds != nil {
			grace = *p.TerminationGracePeriodSeconds
		}
		if ct.Lifecycle.PreStop.Sleep.Seconds >= grace {
			c.errf(o, "%s.lifecycle.preStop.sleep.seconds %d uses up terminationGracePeriodSeconds %d", cw, ct.Lifecycle.PreStop.Sleep.Seconds, grace)
		}
	}
	// Resources: a limit below its request is refused by the API.
	for res, lim := range ct.Resources.Limits {
		if req, ok := ct.Resources.Requests[res]; ok && lim.Cmp(req) < 0 {
			c.errf(o, "%s.resources: limits.%s %s is below requests.%s %s", cw, res, lim.String(), res, req.String())
		}
	}
	for res, q := range ct.Resources.Requests {
		if q.Sign() < 0 {
			c.errf(o, "%s.resources.requests.%s is negative", cw, res)
		}
	}
	c.checkMounts(o, cw, ct, vols, claims)
}

// checkEnvAndArgs checks the environment (valid names, known field
// references, references to variables defined before) and the $(VAR)
// references of the command line.
func (c *checker) checkEnvAndArgs(o object, cw string, ct *corev1.Container) {
	defined := map[string]bool{}
	isDefined := func(n string) (string, bool) { return "", defined[n] }
	for j, e := range ct.Env {
		ew := fmt.Sprintf("%s.env[%d]", cw, j)
		for _, msg := range validation.IsEnvVarName(e.Name) {
			c.errf(o, "%s.name %q: %s", ew, e.Name, msg)
		}
		if defined[e.Name] {
			c.errf(o, "%s: %s defined twice", ew, e.Name)
		}
		if e.ValueFrom != nil {
			if e.Value != "" {
				c.errf(o, "%s: both value and valueFrom", ew)
			}
			if fr := e.ValueFrom.FieldRef; fr != nil && !fieldRefPaths.MatchString(fr.FieldPath) {
				c.errf(o, "%s.valueFrom.fieldRef.fieldPath %q is not one the downward API offers", ew, fr.FieldPath)
			}
		}
		if _, undef := expand(e.Value, isDefined); len(undef) > 0 {
			c.errf(o, "%s: $(%s) is not a variable defined above it; the kubelet would leave it as text", ew, strings.Join(undef, "), $("))
		}
		defined[e.Name] = true
	}
	for _, list := range [][]string{ct.Command, ct.Args} {
		for _, a := range list {
			if _, undef := expand(a, isDefined); len(undef) > 0 {
				c.errf(o, "%s: argument %q: $(%s) is not a variable of the container; the kubelet would pass it as text", cw, a, strings.Join(undef, "), $("))
			}
		}
	}
}

// checkContainerPorts checks the declared ports and returns them by name
// and by number.
func (c *checker) checkContainerPorts(o object, cw string, ct *corev1.Container) (map[string]int32, map[int32]bool) {
	portNames := map[string]int32{}
	portNums := map[int32]bool{}
	for j, pt := range ct.Ports {
		pw := fmt.Sprintf("%s.ports[%d]", cw, j)
		if pt.ContainerPort < 1 || pt.ContainerPort > 65535 {
			c.errf(o, "%s.containerPort %d is not a port", pw, pt.ContainerPort)
		}
		if pt.Name != "" {
			for _, msg := range validation.IsValidPortName(pt.Name) {
				c.errf(o, "%s.name %q: %s", pw, pt.Name, msg)
			}
			if _, dup := portNames[pt.Name]; dup {
				c.errf(o, "%s: port name %q used twice", pw, pt.Name)
			}
			portNames[pt.Name] = pt.ContainerPort
		}
		if pt.Protocol != "" && pt.Protocol != corev1.ProtocolTCP && pt.Protocol != corev1.ProtocolUDP && pt.Protocol != corev1.ProtocolSCTP {
			c.errf(o, "%s.protocol %q", pw, pt.Protocol)
		}
		portNums[pt.ContainerPort] = true
	}
	return portNames, portNums
}

// checkContainerProbes checks that each probe has one handler, probes a
// declared port and times out within its period.
func (c *checker) checkContainerProbes(o object, cw string, ct *corev1.Container, portNames map[string]int32, portNums map[int32]bool) {
	for name, pr := range map[string]*corev1.Probe{"startupProbe": ct.StartupProbe, "livenessProbe": ct.LivenessProbe, "readinessProbe": ct.ReadinessProbe} {
		if pr == nil {
			continue
		}
		pw := cw + "." + name
		handlers := 0
		if pr.HTTPGet != nil {
			handlers++
			if !strings.HasPrefix(pr.HTTPGet.Path, "/") {
				c.errf(o, "%s.httpGet.path %q must start with /", pw, pr.HTTPGet.Path)
			}
			c.checkPortRef(o, pw+".httpGet.port", pr.HTTPGet.Port, portNames, portNums)
		}
		if pr.TCPSocket != nil {
			handlers++
			c.checkPortRef(o, pw+".tcpSocket.port", pr.TCPSocket.Port, portNames, portNums)
		}
		if pr.Exec != nil {
			handlers++
		}
		if pr.GRPC != nil {
			handlers++
		}
		if handlers != 1 {
			c.errf(o, "%s: %d handlers; want exactly one", pw, handlers)
		}
		if pr.TimeoutSeconds > 0 && pr.PeriodSeconds > 0 && pr.TimeoutSeconds > pr.PeriodSeconds {
			c.errf(o, "%s: timeoutSeconds %d > periodSeconds %d", pw, pr.TimeoutSeconds, pr.PeriodSeconds)
		}
	}
}

// checkMounts checks that each mount names a volume and an absolute path
// of its own.
func (c *checker) checkMounts(o object, cw string, ct *corev1.Container, vols map[string]corev1.Volume, claims map[string]bool) {
	mounts := map[string]bool{}
	for j, m := range ct.VolumeMounts {
		mw := fmt.Sprintf("%s.volumeMounts[%d]", cw, j)
		if _, ok := vols[m.Name]; !ok && !claims[m.Name] {
			c.errf(o, "%s: no volume or volumeClaimTemplate named %q", mw, m.Name)
		}
		if !path.IsAbs(m.MountPath) {
			c.errf(o, "%s.mountPath %q is not absolute", mw, m.MountPath)
		}
		if mounts[m.MountPath] {
			c.errf(o, "%s: %s mounted twice", mw, m.MountPath)
		}
		mounts[m.MountPath] = true
	}
}

func (c *checker) checkPortRef(o object, where string, port intstr.IntOrString, names map[string]int32, nums map[int32]bool) {
	if port.Type == intstr.String {
		if _, ok := names[port.StrVal]; !ok {
			c.errf(o, "%s %q: the container has no port of that name", where, port.StrVal)
		}
		return
	}
	if !nums[port.IntVal] {
		c.errf(o, "%s %d: the container declares no such port", where, port.IntVal)
	}
}

// containerPort resolves a Service or NetworkPolicy port reference against
// the containers of a workload.
func containerPort(w workload, ref intstr.IntOrString) (int32, bool) {
	for _, ct := range w.spec.Containers {
		for _, p := range ct.Ports {
			if (ref.Type == intstr.String && p.Name == ref.StrVal) || (ref.Type == intstr.Int && p.ContainerPort == ref.IntVal) {
				return p.ContainerPort, true
			}
		}
	}
	return 0, false
}

func (c *checker) checkService(o object, s *corev1.Service) {
	switch s.Spec.Type {
	case "", corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer:
	default:
		c.errf(o, "spec.type %q", s.Spec.Type)
	}
	if s.Spec.ClusterIP == corev1.ClusterIPNone && s.Spec.Type != "" && s.Spec.Type != corev1.ServiceTypeClusterIP {
		c.errf(o, "a headless Service (clusterIP: None) must be of type ClusterIP")
	}
	if len(s.Spec.Ports) == 0 && s.Spec.ClusterIP != corev1.ClusterIPNone {
		c.errf(o, "spec.ports is empty")
	}
	if len(s.Spec.Selector) == 0 {
		c.errf(o, "spec.selector is empty: no endpoints would be managed")
		return
	}
	c.fieldErrs(o, metav1validation.ValidateLabels(s.Spec.Selector, field.NewPath("spec.selector")))
	ws := c.selected(labels.SelectorFromSet(s.Spec.Selector))
	if len(ws) == 0 {
		c.errf(o, "spec.selector %v matches no pod template of the deployment", s.Spec.Selector)
	}
	names := map[string]bool{}
	for i, p := range s.Spec.Ports {
		pw := fmt.Sprintf("spec.ports[%d]", i)
		if len(s.Spec.Ports) > 1 && p.Name == "" {
			c.errf(o, "%s: a Service with several ports must name each (the API refuses this)", pw)
		}
		if p.Name != "" {
			for _, msg := range validation.IsDNS1123Label(p.Name) {
				c.errf(o, "%s.name %q: %s", pw, p.Name, msg)
			}
		}
		if names[p.Name] {
			c.errf(o, "%s: name %q used twice", pw, p.Name)
		}
		names[p.Name] = true
		if p.Port < 1 || p.Port > 65535 {
			c.errf(o, "%s.port %d is not a port", pw, p.Port)
		}
		target := p.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 && target.StrVal == "" {
			target = intstr.FromInt32(p.Port)
		}
		for _, w := range ws {
			if _, ok := containerPort(w, target); !ok {
				c.errf(o, "%s.targetPort %s: %s has no such container port", pw, target.String(), w.o.name)
			}
		}
	}
}

func (c *checker) checkPDB(o object, p *policyv1.PodDisruptionBudget) {
	if (p.Spec.MinAvailable == nil) == (p.Spec.MaxUnavailable == nil) {
		c.errf(o, "set exactly one of spec.minAvailable and spec.maxUnavailable")
	}
	sel := c.selector(o, p.Spec.Selector, "spec.selector", false)
	ws := c.selected(sel)
	if len(ws) == 0 {
		c.errf(o, "spec.selector matches no pod template of the deployment")
	}
	for _, w := range ws {
		if m := p.Spec.MaxUnavailable; m != nil {
			if v, err := intstr.GetScaledValueFromIntOrPercent(m, int(w.replicas), false); err != nil {
				c.errf(o, "spec.maxUnavailable: %v", err)
			} else if v < 1 {
				c.errf(o, "spec.maxUnavailable %s allows no voluntary disruption of %s: node drains would block", m.String(), w.o.name)
			} else if int32(v) > (w.replicas-1)/2 && w.replicas > 1 {
				c.errf(o, "spec.maxUnavailable %s lets %d of %s's %d pods go at once: more than a Raft quorum can lose", m.String(), v, w.o.name, w.replicas)
			}
		}
	}
}

func (c *checker) checkNetworkPolicy(o object, n *networkingv1.NetworkPolicy) {
	sel := c.selector(o, &n.Spec.PodSelector, "spec.podSelector", false)
	ws := c.selected(sel)
	if len(ws) == 0 {
		c.errf(o, "spec.podSelector matches no pod template of the deployment")
	}
	for i, r := range n.Spec.Ingress {
		for j, p := range r.Ports {
			if p.Port == nil {
				continue
			}
			for _, w := range ws {
				if _, ok := containerPort(w, *p.Port); !ok {
					c.errf(o, "spec.ingress[%d].ports[%d].port %s: %s has no such container port", i, j, p.Port.String(), w.o.name)
				}
			}
		}
		for j, peer := range r.From {
			if peer.PodSelector != nil {
				c.selector(o, peer.PodSelector, fmt.Sprintf("spec.ingress[%d].from[%d].podSelector", i, j), true)
			}
		}
	}
	for _, t := range n.Spec.PolicyTypes {
		if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
			c.errf(o, "spec.policyTypes: %q", t)
		}
	}
}

// atoiPort parses the port of HOST:PORT.
func atoiPort(s string) (int32, bool) {
	n, err := strconv.Atoi(s)
	return int32(n), err == nil && n > 0 && n < 65536
}
