// A minimal Gateway API traffic router plugin for Argo Rollouts, for bench/sidebyside.py.
//
// The upstream plugin (argoproj-labs/rollouts-plugin-trafficrouter-gatewayapi) is refused
// by the Go module proxy at every version, so the benchmark brings its own, built inside
// Argo's module on its plugin RPC package (env/build.sh argo-gatewayapi-plugin). It does
// what the upstream plugin does for a weighted canary: it sets the HTTPRoute's
// backendRef weights, canary = w and stable = 100 - w, in every rule that names them.
// The route is named in the Rollout's trafficRouting.plugins:
//
//	plugins:
//	  chatops/gatewayapi: {"httpRoute": "web", "namespace": "argo"}
//
// Header and mirror routes are not implemented (the benchmark uses neither).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	goPlugin "github.com/hashicorp/go-plugin"
	log "github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	rolloutsPlugin "github.com/argoproj/argo-rollouts/rollout/trafficrouting/plugin/rpc"
	pluginTypes "github.com/argoproj/argo-rollouts/utils/plugin/types"
)

const pluginName = "chatops/gatewayapi"

var httpRoutes = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}

type config struct {
	HTTPRoute string `json:"httpRoute"`
	Namespace string `json:"namespace"`
}

type router struct {
	client dynamic.Interface
}

var _ rolloutsPlugin.TrafficRouterPlugin = &router{}

func fail(err error) pluginTypes.RpcError { return pluginTypes.RpcError{ErrorString: err.Error()} }

func (r *router) InitPlugin() pluginTypes.RpcError {
	rules := clientcmd.NewDefaultClientConfigLoadingRules() // $KUBECONFIG, as the controller's
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return fail(err)
	}
	cfg.UserAgent = "argo-rollouts-gatewayapi-plugin"
	if r.client, err = dynamic.NewForConfig(cfg); err != nil {
		return fail(err)
	}
	return pluginTypes.RpcError{}
}

func routeOf(ro *v1alpha1.Rollout) (config, error) {
	var c config
	raw, ok := ro.Spec.Strategy.Canary.TrafficRouting.Plugins[pluginName]
	if !ok {
		return c, fmt.Errorf("rollout %s/%s: no %s in trafficRouting.plugins", ro.Namespace, ro.Name, pluginName)
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("rollout %s/%s: %s: %w", ro.Namespace, ro.Name, pluginName, err)
	}
	if c.Namespace == "" {
		c.Namespace = ro.Namespace
	}
	return c, nil
}

func (r *router) SetWeight(ro *v1alpha1.Rollout, desiredWeight int32, _ []v1alpha1.WeightDestination) pluginTypes.RpcError {
	c, err := routeOf(ro)
	if err != nil {
		return fail(err)
	}
	ctx := context.Background()
	routes := r.client.Resource(httpRoutes).Namespace(c.Namespace)
	route, err := routes.Get(ctx, c.HTTPRoute, metav1.GetOptions{})
	if err != nil {
		return fail(err)
	}
	canary, stable := ro.Spec.Strategy.Canary.CanaryService, ro.Spec.Strategy.Canary.StableService
	rules, _, _ := unstructured.NestedSlice(route.Object, "spec", "rules")
	changed := false
	for _, rule := range rules {
		refs, _ := rule.(map[string]any)["backendRefs"].([]any)
		for _, ref := range refs {
			backend := ref.(map[string]any)
			want := int64(-1)
			switch backend["name"] {
			case canary:
				want = int64(desiredWeight)
			case stable:
				want = int64(100 - desiredWeight)
			}
			if have, _ := backend["weight"].(int64); want >= 0 && have != want {
				backend["weight"] = want
				changed = true
			}
		}
	}
	if !changed {
		return pluginTypes.RpcError{}
	}
	if err := unstructured.SetNestedSlice(route.Object, rules, "spec", "rules"); err != nil {
		return fail(err)
	}
	if _, err := routes.Update(ctx, route, metav1.UpdateOptions{}); err != nil {
		return fail(err)
	}
	return pluginTypes.RpcError{}
}

func (r *router) UpdateHash(*v1alpha1.Rollout, string, string, []v1alpha1.WeightDestination) pluginTypes.RpcError {
	return pluginTypes.RpcError{}
}

func (r *router) SetHeaderRoute(*v1alpha1.Rollout, *v1alpha1.SetHeaderRoute) pluginTypes.RpcError {
	return pluginTypes.RpcError{}
}

func (r *router) SetMirrorRoute(*v1alpha1.Rollout, *v1alpha1.SetMirrorRoute) pluginTypes.RpcError {
	return pluginTypes.RpcError{}
}

func (r *router) VerifyWeight(*v1alpha1.Rollout, int32, []v1alpha1.WeightDestination) (pluginTypes.RpcVerified, pluginTypes.RpcError) {
	return pluginTypes.NotImplemented, pluginTypes.RpcError{}
}

func (r *router) RemoveManagedRoutes(*v1alpha1.Rollout) pluginTypes.RpcError {
	return pluginTypes.RpcError{}
}

func (r *router) Type() string { return "GatewayAPI" }

func main() {
	log.SetOutput(os.Stderr)
	goPlugin.Serve(&goPlugin.ServeConfig{
		HandshakeConfig: goPlugin.HandshakeConfig{
			ProtocolVersion:  1,
			MagicCookieKey:   "ARGO_ROLLOUTS_RPC_PLUGIN",
			MagicCookieValue: "trafficrouter",
		},
		Plugins: map[string]goPlugin.Plugin{
			"RpcTrafficRouterPlugin": &rolloutsPlugin.RpcTrafficRouterPlugin{Impl: &router{}},
		},
	})
}
