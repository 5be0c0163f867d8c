-- Remove modeldeploy.io/pause: the operator continues the canary from where it was held.
-- An emptied annotations table must not be returned: Argo CD encodes an empty Lua table as [] (Lua has
-- no empty object), which is not a valid metadata.annotations. Drop it instead: the patch removes the key.
if obj.metadata.annotations ~= nil then
  obj.metadata.annotations["modeldeploy.io/pause"] = nil
  if next(obj.metadata.annotations) == nil then
    obj.metadata.annotations = nil
  end
end
return obj
