package api

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/vault"
)

// op documents a route for the OpenAPI document.
type op struct {
	summary string
	in      string   // request body schema name
	out     string   // response schema name
	list    bool     // the response is {"list": [out]}
	status  int      // the success status
	query   []string // query parameters
	text    bool     // the response is text, not JSON
}

// obj is a JSON object in the document.
type obj = map[string]any

func ref(name string) obj { return obj{"$ref": "#/components/schemas/" + name} }

func props(required []string, p obj) obj {
	o := obj{"type": "object", "properties": p}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}

var (
	str     = obj{"type": "string"}
	integer = obj{"type": "integer"}
	boolean = obj{"type": "boolean"}
	stamp   = obj{"type": "string", "format": "date-time"}
	strs    = obj{"type": "array", "items": str}
	anyObj  = obj{"type": "object", "additionalProperties": true}
)

// schemas are the shapes of ARCHITECTURE.md §2-§4.
var schemas = obj{
	"Error": props([]string{"code", "message"}, obj{"code": str, "message": str}),
	"Field": props([]string{"type", "value"}, obj{"type": obj{"type": "string", "enum": vault.FieldTypes}, "label": str,
		"value": obj{"type": "array", "items": obj{}}}),
	"RecordInput": props([]string{"type", "title"}, obj{"type": obj{"type": "string",
		"enum": []string{"login", "pamUser", "pamConfiguration", "pamMachine", "pamDatabase", "pamDirectory", "general"}},
		"title": str, "folder": str, "fields": obj{"type": "array", "items": ref("Field")},
		"custom": obj{"type": "array", "items": ref("Field")}, "notes": str,
		"revision":   obj{"type": "integer", "description": "required on update: the revision read"},
		"uid":        obj{"type": "string", "description": "as a GET answers it: on update it must be the uid of the record in the path; refused on create"},
		"created_at": obj{"type": "string", "format": "date-time", "description": "as a GET answers it; ignored"},
		"updated_at": obj{"type": "string", "format": "date-time", "description": "as a GET answers it; ignored"}}),
	"Record": props(nil, obj{"uid": str, "type": str, "title": str, "folder": str,
		"fields": obj{"type": "array", "items": ref("Field")}, "custom": obj{"type": "array", "items": ref("Field")},
		"notes": str, "revision": integer, "created_at": stamp, "updated_at": stamp}),
	"RecordSummary": props(nil, obj{"uid": str, "type": str, "title": str, "folder": str, "revision": integer,
		"created_at": stamp, "updated_at": stamp}),
	"PasswordVersion": props(nil, obj{"version": integer, "state": obj{"type": "string",
		"enum": []string{"current", "previous", "pending", "failed"}}, "value": str, "created_at": stamp, "updated_at": stamp}),
	"NotationValue": props([]string{"value"}, obj{"value": obj{}}),
	"TokenRequest":  props([]string{"key_id", "key_secret"}, obj{"key_id": obj{"type": "string", "format": "uuid"}, "key_secret": str}),
	"TokenResponse": props(nil, obj{"bearer_token": str, "expires_at": stamp, "team_name": str}),
	"ServiceUserInput": props(nil, obj{"name": str, "status": obj{"type": "string",
		"enum": []string{auth.StatusActive, auth.StatusDisabled, auth.StatusDeleted}},
		"roles": strs, "folders": strs}),
	"ServiceUser": props(nil, obj{"id": str, "name": str, "team_name": str, "status": str, "user_type": str,
		"roles": strs, "folders": strs, "details": obj{"nullable": true}, "deleted_at": obj{"type": "string", "format": "date-time", "nullable": true}}),
	"Key": props(nil, obj{"id": str, "issued_at": stamp, "expires_at": stamp,
		"last_used": obj{"type": "string", "format": "date-time", "nullable": true}}),
	"NewKey": props(nil, obj{"id": str, "secret": str, "issued_at": stamp, "expires_at": stamp,
		"last_used": obj{"type": "string", "format": "date-time", "nullable": true}}),
	"ScriptInput": props([]string{"name", "content_base64"}, obj{"name": str, "content_base64": str,
		"command": str, "credential_uids": strs, "timeout_s": integer}),
	"Script": props(nil, obj{"id": str, "record_uid": str, "name": str, "command": str, "credential_uids": strs,
		"timeout_s": integer, "sha256": str, "size": integer, "created_at": stamp}),
	"ScriptParams": anyObj,
	"RotationSettings": props([]string{"method"}, obj{"method": obj{"type": "string", "enum": []string{"general", "scripts_only"}},
		"connector": obj{"type": "string", "enum": rotation.ConnectorNames}, "configuration_uid": str, "resource_uid": str,
		"schedule": anyObj, "complexity": anyObj, "verify_with": str, "enabled": boolean, "window": str, "paused": boolean,
		"catch_up": obj{"type": "string", "enum": []string{"run_once", "skip"}}, "next_run_at": stamp, "revision": integer}),
	"RotationInfo": obj{"allOf": []any{ref("RotationSettings"), props(nil, obj{"record_uid": str, "state": str, "last_rotation_id": str,
		"next_run_at": stamp, "next_heartbeat_at": stamp, "drift": anyObj})}},
	"RotateAccepted": props(nil, obj{"rotation_id": str, "status": str}),
	"ExecResult":     props(nil, obj{"name": str, "return_code": integer, "stdout": str, "stderr": str, "duration_ms": integer}),
	"Run": props(nil, obj{"id": str, "record_uid": str, "trigger": obj{"type": "string", "enum": []string{"on_demand", "scheduled", "recovery"}},
		"status": obj{"type": "string", "enum": []string{"queued", "running", "succeeded", "failed", "needs_attention"}},
		"state":  str, "attempt": integer, "error": ref("Error"), "created_at": stamp, "started_at": stamp, "finished_at": stamp,
		"exec_log": obj{"type": "array", "items": ref("ExecResult")},
		"states":   obj{"type": "array", "description": "the states the run committed, in order (GET of one run only)", "items": props(nil, obj{"state": str, "at": stamp})}}),
	"AuditLink": props([]string{"seq", "id"}, obj{"seq": integer, "team_seq": integer,
		"id": obj{"type": "string", "description": "the event's hash, hex: its team hash in a team chain's report"}}),
	"AuditVerification": props([]string{"chain", "ok", "events"}, obj{"chain": obj{"type": "string", "enum": []string{audit.ChainTeam, audit.ChainVault}},
		"ok": boolean, "events": integer, "head": ref("AuditLink"),
		"first_broken": props([]string{"seq", "reason", "message"}, obj{"seq": integer, "team_seq": integer, "id": str, "message": str,
			"reason": obj{"type": "string", "enum": []string{audit.HashMismatch, audit.SequenceGap, audit.LinkMismatch, audit.TailTruncated, audit.HeadMissing}}})}),
	"AuditEvent": props(nil, obj{"seq": integer, "type": str, "actor": str, "record_uid": str, "details": anyObj, "created_at": stamp}),
}

var pathParam = regexp.MustCompile(`\{([a-z_]+)\}`)

var (
	openapiOnce sync.Once
	openapiDoc  []byte
)

// openapi serves the OpenAPI 3 document of every route, built from the route table.
func (s *server) openapi(w http.ResponseWriter, _ *http.Request, _ *auth.Principal) error {
	openapiOnce.Do(func() { openapiDoc, _ = json.Marshal(document(s.routes())) })
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openapiDoc)
	return nil
}

// document builds the OpenAPI document from routes.
func document(routes []route) obj {
	paths := obj{}
	for _, rt := range routes {
		item, _ := paths[rt.path].(obj)
		if item == nil {
			item = obj{}
			paths[rt.path] = item
		}
		operation := obj{"summary": rt.doc.summary, "operationId": operationID(rt),
			"responses": responses(rt)}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(rt.path, -1) {
			param := obj{"name": m[1], "in": "path", "required": true, "schema": str}
			if m[1] == "uid" {
				param["description"] = "a record's uid, or its exact title (400 ambiguous_title, listing their uids, when several records you can see have it)"
			}
			params = append(params, param)
		}
		for _, q := range rt.doc.query {
			params = append(params, obj{"name": q, "in": "query", "schema": str})
		}
		if len(params) > 0 {
			operation["parameters"] = params
		}
		if rt.doc.in != "" {
			operation["requestBody"] = obj{"required": true, "content": obj{"application/json": obj{"schema": ref(rt.doc.in)}}}
		}
		if rt.public {
			operation["security"] = []any{}
		} else {
			roles := make([]string, len(rt.roles))
			for i, r := range rt.roles {
				roles[i] = string(r)
			}
			operation["x-keyturn-roles"] = roles
		}
		item[strings.ToLower(rt.method)] = operation
	}
	return obj{
		"openapi": "3.0.3",
		"info": obj{"title": "keyturn", "version": "v1",
			"description": "Privileged-credential rotation gateway. Errors are {code, message}; lists are {list: [...]} with a Link rel=\"next\" header while more remain."},
		"paths":    paths,
		"security": []any{obj{"bearerAuth": []string{}}},
		"components": obj{"schemas": schemas,
			"securitySchemes": obj{"bearerAuth": obj{"type": "http", "scheme": "bearer",
				"description": "a token from POST /v1/teams/{team}/service_token"}}},
	}
}

func responses(rt route) obj {
	out := obj{}
	ok := obj{"description": "success"}
	switch {
	case rt.doc.text:
		ok["content"] = obj{"text/plain": obj{"schema": str}}
	case rt.doc.out != "" && rt.doc.list:
		ok["content"] = obj{"application/json": obj{"schema": props(nil, obj{"list": obj{"type": "array", "items": ref(rt.doc.out)}})}}
	case rt.doc.out != "":
		ok["content"] = obj{"application/json": obj{"schema": ref(rt.doc.out)}}
	}
	out[strconv.Itoa(rt.doc.status)] = ok
	errBody := obj{"application/json": obj{"schema": ref("Error")}}
	out["4XX"] = obj{"description": "a client error: {code, message}", "content": errBody}
	return out
}

func operationID(rt route) string {
	p := pathParam.ReplaceAllString(strings.TrimPrefix(rt.path, "/v1/teams/{team}"), "by_$1")
	p = strings.NewReplacer("/", "_", "-", "_", ".", "_").Replace(strings.Trim(p, "/"))
	if p == "" {
		p = "root"
	}
	return strings.ToLower(rt.method) + "_" + p
}
