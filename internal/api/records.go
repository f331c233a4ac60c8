package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/vault"
)

// recordInput is the body of record create and update requests. It takes every key a GET
// answers, so a record read, changed and sent back is accepted: uid must then be the record's
// own, and the timestamps, which the server keeps, are ignored.
type recordInput struct {
	Type     string        `json:"type"`
	Title    string        `json:"title"`
	Folder   string        `json:"folder"`
	Fields   []vault.Field `json:"fields"`
	Custom   []vault.Field `json:"custom"`
	Notes    string        `json:"notes"`
	Revision *int64        `json:"revision"`

	// Read-only: what a GET answers besides the above.
	UID       *string         `json:"uid,omitempty"`
	CreatedAt json.RawMessage `json:"created_at,omitempty"`
	UpdatedAt json.RawMessage `json:"updated_at,omitempty"`
}

// decodeRecord parses a record request body strictly: one JSON object, no unknown keys.
func decodeRecord(body []byte) (recordInput, error) {
	var in recordInput
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return recordInput{}, jsonError(err)
	}
	// dec.More would miss a stray '}' or ']' after the object: anything but EOF is extra.
	if _, err := dec.Token(); err != io.EOF {
		return recordInput{}, fault.New(fault.Invalid, "malformed_json", "the body holds more than one JSON value")
	}
	return in, nil
}

func readRecord(r *http.Request) (recordInput, error) {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r.Body); err != nil {
		return recordInput{}, jsonError(err)
	}
	return decodeRecord(buf.Bytes())
}

func (in recordInput) record(uid string) vault.Record {
	rec := vault.Record{UID: uid, Type: in.Type, Title: in.Title, Folder: in.Folder, Fields: in.Fields,
		Custom: in.Custom, Notes: in.Notes}
	if in.Revision != nil {
		rec.Revision = *in.Revision
	}
	return rec
}

func scope(p *auth.Principal) vault.Scope {
	return vault.Scope{TeamID: p.TeamID, Folders: p.Folders, Actor: p.UserName, KeyID: p.KeyID}
}

func (s *server) createRecord(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	in, err := readRecord(r)
	if err != nil {
		return err
	}
	if in.UID != nil {
		return fault.Invalidf("uid is assigned by the server: leave it out of a new record")
	}
	rec, err := s.Vault.Create(r.Context(), scope(p), in.record(""))
	if err != nil {
		return err
	}
	w.Header().Set("Location", r.URL.Path+"/"+rec.UID)
	return writeJSON(w, http.StatusCreated, rec)
}

func (s *server) getRecord(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	rec, err := s.Vault.Get(r.Context(), scope(p), r.PathValue("uid"))
	if err != nil {
		return err
	}
	if err := s.audit(p, audit.RecordSecretRead, rec.UID, map[string]any{"via": "get", "revision": rec.Revision}); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rec)
}

func (s *server) updateRecord(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	in, err := readRecord(r)
	if err != nil {
		return err
	}
	if in.Revision == nil {
		return fault.New(fault.Invalid, "missing_required_field", "revision is required: send the revision you read, so a concurrent change is not overwritten")
	}
	uid := r.PathValue("uid")
	if in.UID != nil && *in.UID != uid {
		return fault.Invalidf("uid %q in the body is not the uid of the record in the path (%s): a record's uid cannot change", *in.UID, uid)
	}
	rec, err := s.Vault.Update(r.Context(), scope(p), in.record(uid))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rec)
}

func (s *server) deleteRecord(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	if err := s.Vault.Delete(r.Context(), scope(p), r.PathValue("uid")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listPage reads count (1..1000, default 100) and offset from the query.
func listPage(q url.Values) (count, offset int, err error) {
	count, offset = 100, 0
	if v := q.Get("count"); v != "" {
		if count, err = strconv.Atoi(v); err != nil || count < 1 || count > 1000 {
			return 0, 0, fault.Invalidf("count must be a number from 1 to 1000, not %q", v)
		}
	}
	if v := q.Get("offset"); v != "" {
		if offset, err = strconv.Atoi(v); err != nil || offset < 0 {
			return 0, 0, fault.Invalidf("offset must be a non-negative number, not %q", v)
		}
	}
	return count, offset, nil
}

// setNextLink adds a Link header pointing at the next page.
func setNextLink(w http.ResponseWriter, r *http.Request, count, offset int) {
	q := r.URL.Query()
	q.Set("offset", strconv.Itoa(offset+count))
	q.Set("count", strconv.Itoa(count))
	w.Header().Set("Link", "<"+r.URL.Path+"?"+q.Encode()+`>; rel="next"`)
}

type list[T any] struct {
	List []T `json:"list"`
}

func (s *server) listRecords(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	q := r.URL.Query()
	count, offset, err := listPage(q)
	if err != nil {
		return err
	}
	if err := vault.ValidateFolder(q.Get("folder")); err != nil {
		return err
	}
	items, more, err := s.Vault.List(r.Context(), scope(p), vault.ListOptions{
		Type: q.Get("type"), Folder: q.Get("folder"), Title: q.Get("title"), Count: count, Offset: offset,
	})
	if err != nil {
		return err
	}
	if more {
		setNextLink(w, r, count, offset)
	}
	return writeJSON(w, http.StatusOK, list[vault.Summary]{List: items})
}

// versionView is a password version as the API shows it; Value only with ?reveal=true.
type versionView struct {
	Version   int64   `json:"version"`
	State     string  `json:"state"`
	Value     *string `json:"value,omitempty"`
	CreatedAt string  `json:"created_at"`
	UpdatedAt string  `json:"updated_at"`
}

func (s *server) recordVersions(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	reveal, err := boolParam(r, "reveal")
	if err != nil {
		return err
	}
	versions, err := s.Vault.Versions(r.Context(), scope(p), r.PathValue("uid"))
	if err != nil {
		return err
	}
	if reveal {
		if err := s.audit(p, audit.RecordSecretRead, r.PathValue("uid"), map[string]any{"via": "versions"}); err != nil {
			return err
		}
	}
	out := make([]versionView, len(versions))
	for i, v := range versions {
		out[i] = versionView{Version: v.Version, State: v.State,
			CreatedAt: v.CreatedAt.Format(timeFormat), UpdatedAt: v.UpdatedAt.Format(timeFormat)}
		if reveal {
			val := v.Value.Reveal()
			out[i].Value = &val
		}
	}
	return writeJSON(w, http.StatusOK, list[versionView]{List: out})
}

func (s *server) notation(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	ref := r.URL.Query().Get("ref")
	if ref == "" {
		return fault.New(fault.Invalid, "bad_notation", "ref is required, as in ?ref=keeper://<uid>/field/password")
	}
	val, uid, err := s.Vault.Resolve(r.Context(), scope(p), ref)
	if err != nil {
		return err
	}
	if err := s.audit(p, audit.RecordSecretRead, uid, map[string]any{"via": "notation", "ref": ref}); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]json.RawMessage{"value": val})
}
