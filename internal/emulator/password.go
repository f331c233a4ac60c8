package emulator

import (
	"fmt"
	"strings"
	"time"
	"unicode"
)

// PasswordPolicy is the org's password policy as the emulator enforces it. Complexity is
// checked on every password change and set; history on change_password always and on an
// admin set only with strict=true; MinAge only with strict=true.
type PasswordPolicy struct {
	MinLength        int  // at least this many characters
	MinLowerCase     int  // at least this many lowercase letters
	MinUpperCase     int  // at least this many uppercase letters
	MinNumber        int  // at least this many digits
	MinSymbol        int  // at least this many characters that are neither letters nor digits
	ExcludeUsername  bool // no part of the login (split on punctuation, parts of 4+ characters)
	ExcludeFirstName bool // does not contain profile.firstName
	ExcludeLastName  bool // does not contain profile.lastName
	// HistoryCount is how many passwords, the current one included, cannot be reused.
	HistoryCount int
	// MinAge is the minimum time between two changes (enforced only with ?strict=true).
	MinAge time.Duration
}

// DefaultPasswordPolicy is Okta's default policy: at least 8 characters, a lowercase
// letter, an uppercase letter, a number, no parts of the username, not one of the last 4.
func DefaultPasswordPolicy() PasswordPolicy {
	return PasswordPolicy{MinLength: 8, MinLowerCase: 1, MinUpperCase: 1, MinNumber: 1, ExcludeUsername: true, HistoryCount: 4}
}

// SeedPassword is the initial password of the i-th seeded user (login SeedLogin(i)); it
// satisfies DefaultPasswordPolicy.
func SeedPassword(i int) string { return fmt.Sprintf("Seed-%04d-Pass", i) }

// SeedLogin is the login (and email) of the i-th seeded user, counting from 1.
func SeedLogin(i int) string { return fmt.Sprintf("user%04d@example.com", i) }

func countPhrase(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return fmt.Sprintf("at least %d %s", n, many)
}

// Requirements is the policy as Okta words it in errorCauses, e.g. "Password requirements:
// at least 8 characters, a lowercase letter, … Your password cannot be any of your last 4 passwords."
func (p PasswordPolicy) Requirements() string {
	var parts []string
	if p.MinLength > 0 {
		parts = append(parts, fmt.Sprintf("at least %d characters", p.MinLength))
	}
	if p.MinLowerCase > 0 {
		parts = append(parts, countPhrase(p.MinLowerCase, "a lowercase letter", "lowercase letters"))
	}
	if p.MinUpperCase > 0 {
		parts = append(parts, countPhrase(p.MinUpperCase, "an uppercase letter", "uppercase letters"))
	}
	if p.MinNumber > 0 {
		parts = append(parts, countPhrase(p.MinNumber, "a number", "numbers"))
	}
	if p.MinSymbol > 0 {
		parts = append(parts, countPhrase(p.MinSymbol, "a symbol", "symbols"))
	}
	if p.ExcludeUsername {
		parts = append(parts, "no parts of your username")
	}
	if p.ExcludeFirstName {
		parts = append(parts, "does not include your first name")
	}
	if p.ExcludeLastName {
		parts = append(parts, "does not include your last name")
	}
	s := "Password requirements: " + strings.Join(parts, ", ") + "."
	if len(parts) == 0 {
		s = "Password requirements: none."
	}
	switch {
	case p.HistoryCount == 1:
		s += " Your password cannot be your current password."
	case p.HistoryCount > 1:
		s += fmt.Sprintf(" Your password cannot be any of your last %d passwords.", p.HistoryCount)
	}
	if p.MinAge > 0 {
		s += fmt.Sprintf(" At least %d minute(s) must have elapsed since you last changed your password.", int(p.MinAge.Minutes()))
	}
	return s
}

// notMet is the errorCauses text for a password the policy refuses.
func (p PasswordPolicy) notMet() string {
	return "Password requirements were not met. " + p.Requirements()
}

// usernameParts splits a login on punctuation and keeps the parts of 4 or more characters,
// lower-cased, as Okta's "no parts of your username" rule does.
func usernameParts(login string) []string {
	var parts []string
	for _, f := range strings.FieldsFunc(login, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	}) {
		if len([]rune(f)) >= 4 {
			parts = append(parts, strings.ToLower(f))
		}
	}
	return parts
}

// complexityOK reports whether pw satisfies the complexity rules for the given user.
func (p PasswordPolicy) complexityOK(pw, login, first, last string) bool {
	var lower, upper, number, symbol int
	for _, r := range pw {
		switch {
		case unicode.IsLower(r):
			lower++
		case unicode.IsUpper(r):
			upper++
		case unicode.IsDigit(r):
			number++
		case unicode.IsLetter(r):
		default:
			symbol++
		}
	}
	if len([]rune(pw)) < p.MinLength || lower < p.MinLowerCase || upper < p.MinUpperCase || number < p.MinNumber || symbol < p.MinSymbol {
		return false
	}
	lpw := strings.ToLower(pw)
	if p.ExcludeUsername {
		for _, part := range usernameParts(login) {
			if strings.Contains(lpw, part) {
				return false
			}
		}
	}
	if p.ExcludeFirstName && first != "" && strings.Contains(lpw, strings.ToLower(first)) {
		return false
	}
	if p.ExcludeLastName && last != "" && strings.Contains(lpw, strings.ToLower(last)) {
		return false
	}
	return true
}

// inHistory reports whether pw is one of the HistoryCount most recent passwords (history
// holds the most recent first, the current password included).
func (p PasswordPolicy) inHistory(pw string, history []string) bool {
	for i, old := range history {
		if i >= p.HistoryCount {
			break
		}
		if old == pw {
			return true
		}
	}
	return false
}
