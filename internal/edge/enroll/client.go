package enroll

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// apiError is the API's error shape: {"error":{"code":"...","message":"..."}}.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Enroll sends req to the twin-service at baseURL (e.g. https://twin:8080)
// and returns its answer.
func Enroll(ctx context.Context, hc *http.Client, baseURL string, req Request) (Response, error) {
	var resp Response
	err := post(ctx, hc, baseURL, PathEnroll, "", req, &resp)
	return resp, err
}

// IssueToken asks twin-service for a token, authenticating with bearer (an
// administrator's API token), for tools and tests.
func IssueToken(ctx context.Context, hc *http.Client, baseURL, bearer string, req TokenRequest) (Token, error) {
	var t Token
	err := post(ctx, hc, baseURL, PathTokens, bearer, req, &t)
	return t, err
}

func post(ctx context.Context, hc *http.Client, baseURL, path, bearer string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	url := strings.TrimRight(baseURL, "/") + "/api/v1" + path
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	r.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		r.Header.Set("Authorization", "Bearer "+bearer)
	}
	res, err := hc.Do(r)
	if err != nil {
		return fmt.Errorf("post %s: %w", url, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("post %s: %w", url, err)
	}
	if res.StatusCode/100 != 2 {
		var e apiError
		if json.Unmarshal(data, &e) == nil && e.Error.Code != "" {
			return fmt.Errorf("post %s: %s: %s", url, e.Error.Code, e.Error.Message)
		}
		return fmt.Errorf("post %s: %s", url, res.Status)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("post %s: answer: %w", url, err)
	}
	return nil
}
