-- Remove modeldeploy.io/pause: the operator continues the canary from where it was held.
if obj.metadata.annotations ~= nil then
  obj.metadata.annotations["modeldeploy.io/pause"] = nil
end
return obj
