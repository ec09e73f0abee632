package main

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// errUsage marks an error in how the command was called (exit code 2).
var errUsage = errors.New("usage")

// parseFlags parses args into fs and then fills every flag not given on the
// command line from, in order, the FLOWBUS_<FLAG> environment variable (flag
// name upper-cased, '-' as '_') and the YAML file named by --config (keys are
// flag names). It adds --config to fs, in a group of its own. Unknown keys
// in the file are an error, so a typo does not silently do nothing.
// A YAML list sets a list flag element by element; for other flags it is
// joined with commas.
//
// A renamed flag (flagSet.alias) is also taken under its old name, on the
// command line, as a variable or as a key, with a one-line deprecation
// warning on fs's output; the new name wins. Last, every flag's value is
// checked against its rules (flagSet.check): a value out of range is a usage
// error naming the flag and the range, wherever the value came from.
//
// A secret flag (flagSet.secret) that the command line may not give is a
// usage error there; one that it may is taken with a warning. A config file
// that sets a secret flag must not be readable by group or others.
func parseFlags(fs *flagSet, args []string) error {
	fs.group("Config")
	config := fs.String("config", "", "YAML file of flag values, keys named as the flags (env FLOWBUS_CONFIG)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	for _, name := range slices.Sorted(maps.Keys(fs.secrets)) {
		if !fs.Changed(name) {
			continue
		}
		if !fs.secrets[name] {
			return fmt.Errorf("%w: --%s is not taken on the command line, where other users see it (ps): set %s or the config key %s%s",
				errUsage, name, envName(name), name, fileAlternative(fs, name))
		}
		fmt.Fprintf(fs.Output(), "--%s on the command line is seen by other users (ps): prefer %s%s\n", name, envName(name), fileAlternative(fs, name))
	}
	if *config == "" {
		*config = os.Getenv("FLOWBUS_CONFIG")
	}
	var file map[string]any
	if *config != "" {
		b, err := os.ReadFile(*config)
		if err != nil {
			return fmt.Errorf("read config: %w", err)
		}
		if err := yaml.Unmarshal(b, &file); err != nil {
			return fmt.Errorf("config %s: %w", *config, err)
		}
		if err := checkSecretFile(fs, *config, file); err != nil {
			return err
		}
		for k := range file {
			if fs.Lookup(k) == nil {
				return fmt.Errorf("config %s: unknown key %q (keys are the flags of 'flowbus %s --help')", *config, k, fs.Name())
			}
		}
	}
	oldName := map[string]string{} // flag name → its deprecated name
	for old, name := range fs.aliases {
		oldName[name] = old
	}
	warn := func(old, name string) {
		fmt.Fprintf(fs.Output(), "%s has been deprecated, use %s instead\n", old, name)
	}
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		old := oldName[f.Name]
		if f.Changed || f.Name == "config" || fs.aliases[f.Name] != "" || old != "" && fs.Lookup(old).Changed {
			return
		}
		env := envName(f.Name)
		v, ok := os.LookupEnv(env)
		if !ok && old != "" {
			if v, ok = os.LookupEnv(envName(old)); ok {
				warn(envName(old), env)
				env = envName(old)
			}
		}
		if ok {
			if err := fs.Set(f.Name, v); err != nil {
				if _, secret := fs.secrets[f.Name]; secret {
					v = "<secret>"
				}
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
			return
		}
		key := f.Name
		fv, ok := file[key]
		if !ok && old != "" {
			if fv, ok = file[old]; ok {
				warn(fmt.Sprintf("config key %q", old), fmt.Sprintf("%q", f.Name))
				key = old
			}
		}
		if !ok {
			return
		}
		// A YAML list fills a list flag element by element, so that values
		// with commas (Hubble's --metrics specs) stay whole.
		if list, isList := fv.([]any); isList {
			if sv, isSlice := f.Value.(pflag.SliceValue); isSlice {
				strs := make([]string, len(list))
				for i, e := range list {
					strs[i] = fmt.Sprint(e)
				}
				if err := sv.Replace(strs); err != nil {
					errs = append(errs, fmt.Errorf("config %s: %s: %w", *config, key, err))
				}
				return
			}
		}
		if err := fs.Set(f.Name, yamlValue(fv)); err != nil {
			errs = append(errs, fmt.Errorf("config %s: %s: %w", *config, key, err))
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return fs.checkValues()
}

// checkSecretFile refuses the config file path, whose keys are file, when
// it sets a secret flag to a value and group or others may read it.
func checkSecretFile(fs *flagSet, path string, file map[string]any) error {
	var keys []string
	for k, v := range file {
		name := k
		if n := fs.aliases[k]; n != "" {
			name = n
		}
		if _, secret := fs.secrets[name]; secret && yamlValue(v) != "" {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if mode := info.Mode().Perm(); mode&0o044 != 0 {
		slices.Sort(keys)
		return fmt.Errorf("config %s holds secrets (%s) and is readable by group or others (mode %04o): chmod 600 %s",
			path, strings.Join(keys, ", "), mode, path)
	}
	return nil
}

// fileAlternative is ", or --<name>-file" when fs has such a flag.
func fileAlternative(fs *flagSet, name string) string {
	if fs.Lookup(name+"-file") != nil {
		return ", or --" + name + "-file"
	}
	return ""
}

// envName is the environment variable of a flag: FLOWBUS_<FLAG>.
func envName(flag string) string {
	return "FLOWBUS_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func yamlValue(v any) string {
	switch x := v.(type) {
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = fmt.Sprint(e)
		}
		return strings.Join(parts, ",")
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}
